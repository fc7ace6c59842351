"""Each user's decayed affinities to genres and artists.

Every event with catalog metadata adds its signal weight (negative for skips) to
the user's affinity for the item's artist and genres. Affinities halve every
``half_life`` seconds and only the strongest ``max_genres`` / ``max_artists`` are
kept, so the profile stays small. Without a catalog the profile stays empty.

>>> import numpy as np
>>> from stream.engine.state import ItemIndex, UserState
>>> from stream.models import CatalogItem
>>> items = ItemIndex()
>>> calm = items.upsert(CatalogItem("a", "Calm", "Aurora Fields", ("ambient",), 1, 0.0))
>>> loud = items.upsert(CatalogItem("b", "Loud", "Iron Vale", ("metal",), 1, 0.0))
>>> taste = TasteProfile(half_life=10.0, max_genres=4, max_artists=4)
>>> user = UserState(capacity=4)
>>> taste.learn(user, items, calm, 1.0, at=0.0)
>>> taste.learn(user, items, loud, -1.0, at=0.0)
>>> taste.top_genres(user, items, 2, now=10.0)
[('ambient', 0.5), ('metal', -0.5)]
>>> scores = taste.scores(user, items, np.arange(len(items)))
>>> bool(scores[calm] > 0 > scores[loud])
True
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from stream.engine import kernels
from stream.engine.state import ItemIndex, UserState, copied, decay_scale, forward_decay

#: Affinities are float32: move the decay origin well before 2 ** exponent overflows them.
_MAX_EXPONENT = 40.0


def _bump(keys: array, values: array, key: int, amount: float, cap: int) -> None:
    """Add ``amount`` to ``key``'s value; over ``cap`` entries, drop the weakest."""
    if key in keys:
        values[keys.index(key)] += amount
        return
    keys.append(key)
    values.append(amount)
    if len(keys) > cap:
        weakest = min(range(len(values)), key=lambda i: abs(values[i]))
        del keys[weakest]
        del values[weakest]


def _lookup(keys: array, values: array, key: int) -> float:
    return values[keys.index(key)] if key in keys else 0.0


def _signed_log(value: float) -> float:
    return math.copysign(math.log1p(abs(value)), value)


class TasteProfile:
    """Decayed per-user genre and artist affinities, stored in :class:`UserState`.

    Parameters
    ----------
    half_life
        Seconds after which an event's contribution to an affinity counts half.
    max_genres, max_artists
        Affinities kept per user (largest magnitude first).
    """

    def __init__(self, half_life: float, max_genres: int, max_artists: int) -> None:
        self.half_life = half_life
        self.max_genres = max_genres
        self.max_artists = max_artists

    def _factor(self, user: UserState, at: float) -> float:
        user.taste_origin, factor, rescale = forward_decay(
            user.taste_origin, at, self.half_life, _MAX_EXPONENT
        )
        if rescale != 1.0:
            for values in (user.genre_values, user.artist_values):
                for i in range(len(values)):
                    values[i] *= rescale
        return factor

    def scale_at(self, user: UserState, now: float) -> float:
        return decay_scale(user.taste_origin, now, self.half_life, _MAX_EXPONENT)

    def learn(
        self, user: UserState, items: ItemIndex, row: int, weight: float, *, at: float
    ) -> None:
        """Add an event's signal to the user's affinities for the item's artist and genres."""
        artist = int(items.artist_of[row])
        if artist < 0:
            return
        amount = weight * self._factor(user, at)
        _bump(user.artist_keys, user.artist_values, artist, amount, self.max_artists)
        for genre in items.genres_of[row].tolist():
            if genre >= 0:
                _bump(user.genre_keys, user.genre_values, genre, amount, self.max_genres)

    @staticmethod
    def has_profile(user: UserState) -> bool:
        return len(user.artist_keys) > 0

    @staticmethod
    def total(user: UserState) -> float:
        positive = sum(v for v in user.artist_values if v > 0)
        return max(positive, 1e-12)

    def genre_affinity(self, user: UserState, genre_row: int, *, now: float) -> float:
        """Decayed affinity of the user to one genre (0 if none kept)."""
        return _lookup(user.genre_keys, user.genre_values, genre_row) * self.scale_at(user, now)

    def artist_affinity(self, user: UserState, artist_row: int, *, now: float) -> float:
        """Decayed affinity of the user to one artist (0 if none kept)."""
        return _lookup(user.artist_keys, user.artist_values, artist_row) * self.scale_at(user, now)

    def item_affinity(self, user: UserState, items: ItemIndex, row: int) -> float:
        """Affinity to one item: artist plus mean genre affinity, relative to the profile's mass.

        Relative values need no decay factor: it cancels out.
        """
        artist = int(items.artist_of[row])
        if artist < 0 or not user.artist_keys:
            return 0.0
        genre_sum = 0.0
        n_genres = 0
        for genre in items.genres_of[row].tolist():
            if genre >= 0:
                genre_sum += _lookup(user.genre_keys, user.genre_values, genre)
                n_genres += 1
        raw = _lookup(user.artist_keys, user.artist_values, artist) + genre_sum / max(n_genres, 1)
        return raw / self.total(user)

    def relative_artist_affinity(self, user: UserState, artist_row: int) -> float:
        """Artist affinity relative to the profile's positive mass (0 for unknown artists)."""
        if artist_row < 0 or not user.artist_keys:
            return 0.0
        return _lookup(user.artist_keys, user.artist_values, artist_row) / self.total(user)

    def relative_artist_scores(
        self, user: UserState, items: ItemIndex, rows: np.ndarray
    ) -> np.ndarray:
        """:meth:`relative_artist_affinity` of many items' artists (float64)."""
        out = np.zeros(len(rows))
        if not user.artist_keys:
            return out
        values = np.zeros(len(items.artists) + 1)
        values[np.frombuffer(user.artist_keys, dtype=np.int32)] = np.frombuffer(
            user.artist_values, dtype=np.float32
        ) / self.total(user)
        return values[items.artist_of[rows]]

    def signed_affinity(
        self, user: UserState, items: ItemIndex, row: int, *, now: float
    ) -> tuple[float, float]:
        """Decayed artist and mean genre affinity of an item, log-compressed, sign kept.

        Unlike :meth:`item_affinity` these are absolute: a user who skipped an
        artist three times has a clearly negative value, whatever else they like.
        """
        artist = int(items.artist_of[row])
        if artist < 0 or not user.artist_keys:
            return 0.0, 0.0
        scale = self.scale_at(user, now)
        genre_sum = 0.0
        n_genres = 0
        for genre in items.genres_of[row].tolist():
            if genre >= 0:
                genre_sum += _lookup(user.genre_keys, user.genre_values, genre)
                n_genres += 1
        artist_value = _lookup(user.artist_keys, user.artist_values, artist) * scale
        genre_value = genre_sum / max(n_genres, 1) * scale
        return _signed_log(artist_value), _signed_log(genre_value)

    def signed_scores(
        self, user: UserState, items: ItemIndex, rows: np.ndarray, *, now: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`signed_affinity` of many rows: (artist, genre) arrays."""
        n = len(rows)
        if not user.artist_keys:
            return np.zeros(n), np.zeros(n)
        scale = self.scale_at(user, now)
        artist_values = np.zeros(len(items.artists) + 1)
        artist_values[np.frombuffer(user.artist_keys, dtype=np.int32)] = np.frombuffer(
            user.artist_values, dtype=np.float32
        )
        genre_values = np.zeros(len(items.genres) + 1)
        if user.genre_keys:
            genre_values[np.frombuffer(user.genre_keys, dtype=np.int32)] = np.frombuffer(
                user.genre_values, dtype=np.float32
            )
        genres = items.genres_of[rows]
        n_genres = np.maximum((genres >= 0).sum(axis=1), 1)
        genre = genre_values[genres].sum(axis=1) / n_genres * scale
        artist = artist_values[items.artist_of[rows]] * scale
        return np.sign(artist) * np.log1p(np.abs(artist)), np.sign(genre) * np.log1p(np.abs(genre))

    def columns(
        self, user: UserState, items: ItemIndex, rows: np.ndarray, *, now: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All taste features of many rows from one set of lookups (the ranking hot path).

        Returns
        -------
        tuple of np.ndarray
            :meth:`scores`, :meth:`relative_artist_scores` and the two arrays of
            :meth:`signed_scores` (artist, genre), all float64; ranking needs the
            four, and looking the profile up once costs a quarter of four calls.

        Examples
        --------
        >>> from stream.models import CatalogItem
        >>> items = ItemIndex()
        >>> calm = items.upsert(CatalogItem("a", "Calm", "Aurora Fields", ("ambient",), 1, 0.0))
        >>> taste = TasteProfile(half_life=10.0, max_genres=4, max_artists=4)
        >>> user = UserState(capacity=4)
        >>> taste.learn(user, items, calm, 1.0, at=0.0)
        >>> [round(float(c[0]), 3) for c in taste.columns(user, items, np.array([calm]), now=0.0)]
        [2.0, 1.0, 0.693, 0.693]
        """
        n = len(rows)
        if not user.artist_keys:
            return np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        # One extra slot at the end absorbs the -1 "no artist / no genre" index.
        artist_values = np.zeros(len(items.artists) + 1)
        artist_values[np.frombuffer(user.artist_keys, dtype=np.int32)] = np.frombuffer(
            user.artist_values, dtype=np.float32
        )
        genre_values = np.zeros(len(items.genres) + 1)
        if user.genre_keys:
            genre_values[np.frombuffer(user.genre_keys, dtype=np.int32)] = np.frombuffer(
                user.genre_values, dtype=np.float32
            )
        genres = items.genres_of[rows]
        n_genres = np.maximum((genres >= 0).sum(axis=1), 1)
        genre = genre_values[genres].sum(axis=1) / n_genres
        artist = artist_values[items.artist_of[rows]]
        inverse_total = 1.0 / self.total(user)
        scale = self.scale_at(user, now)
        relative_artist = artist * inverse_total
        taste = relative_artist + genre * inverse_total
        artist *= scale
        genre *= scale
        artist_signed = np.copysign(np.log1p(np.abs(artist)), artist)
        genre_signed = np.copysign(np.log1p(np.abs(genre)), genre)
        return taste, relative_artist, artist_signed, genre_signed

    def scores(self, user: UserState, items: ItemIndex, rows: np.ndarray) -> np.ndarray:
        """:meth:`item_affinity` for many rows at once (zeros without a profile)."""
        if not user.artist_keys:
            return np.zeros(len(rows), dtype=np.float32)
        return kernels.taste_scores(
            np.asarray(rows, dtype=np.int64),
            items.artist_of,
            items.genres_of,
            copied(user.artist_keys, np.int32),
            copied(user.artist_values, np.float32),
            copied(user.genre_keys, np.int32),
            copied(user.genre_values, np.float32),
            len(items.artists),
            len(items.genres),
            1.0 / self.total(user),
        )

    def top_genres(
        self, user: UserState, items: ItemIndex, k: int, *, now: float
    ) -> list[tuple[str, float]]:
        """The user's ``k`` strongest genre affinities as ``(genre, decayed affinity)``."""
        scale = self.scale_at(user, now)
        ranked = sorted(
            zip(user.genre_keys, user.genre_values, strict=True), key=lambda kv: (-kv[1], kv[0])
        )
        return [(items.genres[key], value * scale) for key, value in ranked[:k]]

    def top_artists(
        self, user: UserState, items: ItemIndex, k: int, *, now: float
    ) -> list[tuple[str, float]]:
        """The user's ``k`` strongest artist affinities as ``(artist, decayed affinity)``."""
        scale = self.scale_at(user, now)
        ranked = sorted(
            zip(user.artist_keys, user.artist_values, strict=True), key=lambda kv: (-kv[1], kv[0])
        )
        return [(items.artists[key], value * scale) for key, value in ranked[:k]]
