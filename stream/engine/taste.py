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
