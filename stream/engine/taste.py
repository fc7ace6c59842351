"""Each user's decayed affinities to genres and artists.

Every event with catalog metadata adds its signal weight (negative for skips) to
the user's affinity for the item's artist and genres. Affinities halve every
``half_life`` seconds and only the strongest ``max_genres`` / ``max_artists`` are
kept, so the profile stays small. Without a catalog the profile stays empty.

>>> from stream.engine.state import ItemIndex, UserState
>>> from stream.models import CatalogItem
>>> items = ItemIndex()
>>> calm = items.upsert(CatalogItem("a", "Calm", "Aurora Fields", ("ambient",), 1, 0.0))
>>> loud = items.upsert(CatalogItem("b", "Loud", "Iron Vale", ("metal",), 1, 0.0))
>>> taste = TasteProfile(half_life=10.0, max_genres=4, max_artists=4)
>>> user = UserState.empty(capacity=4)
>>> taste.learn(user, items, calm, 1.0, at=0.0)
>>> taste.learn(user, items, loud, -1.0, at=0.0)
>>> taste.top_genres(user, items, 2, now=10.0)
[('ambient', 0.5), ('metal', -0.5)]
>>> scores = taste.scores(user, items, len(items), now=10.0)
>>> bool(scores[calm] > 0 > scores[loud])
True
"""

from __future__ import annotations

import numpy as np

from stream.engine.state import MAX_ITEM_GENRES, ItemIndex, UserState

_MAX_EXPONENT = 40.0


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
        if user.taste_origin is None:
            user.taste_origin = at
        exponent = (at - user.taste_origin) / self.half_life
        if exponent > _MAX_EXPONENT:
            shrink = 2.0 ** (-exponent)
            for table in (user.genre_taste, user.artist_taste):
                for key in table:
                    table[key] *= shrink
            user.taste_origin = at
            exponent = 0.0
        return float(2.0**exponent)

    def _scale(self, user: UserState, now: float) -> float:
        if user.taste_origin is None:
            return 0.0
        return float(2.0 ** (-(now - user.taste_origin) / self.half_life))

    @staticmethod
    def _bump(table: dict[int, float], key: int, amount: float, cap: int) -> None:
        table[key] = table.get(key, 0.0) + amount
        if len(table) > cap:
            weakest = min(table, key=lambda k: abs(table[k]))
            del table[weakest]

    def learn(
        self, user: UserState, items: ItemIndex, row: int, weight: float, *, at: float
    ) -> None:
        """Add an event's signal to the user's affinities for the item's artist and genres."""
        artist = int(items.artist_of[row])
        if artist < 0:
            return
        amount = weight * self._factor(user, at)
        self._bump(user.artist_taste, artist, amount, self.max_artists)
        for genre in items.genres_of[row]:
            if genre >= 0:
                self._bump(user.genre_taste, int(genre), amount, self.max_genres)

    def _total(self, user: UserState) -> float:
        positive = sum(v for v in user.artist_taste.values() if v > 0)
        return max(positive, 1e-12)

    def genre_affinity(self, user: UserState, genre_row: int, *, now: float) -> float:
        return user.genre_taste.get(genre_row, 0.0) * self._scale(user, now)

    def artist_affinity(self, user: UserState, artist_row: int, *, now: float) -> float:
        return user.artist_taste.get(artist_row, 0.0) * self._scale(user, now)

    def item_affinity(self, user: UserState, items: ItemIndex, row: int, *, now: float) -> float:
        """Affinity to one item: artist plus mean genre affinity, relative to the profile's mass."""
        artist = int(items.artist_of[row])
        if artist < 0 or not user.artist_taste:
            return 0.0
        genre_sum = 0.0
        n_genres = 0
        for genre in items.genres_of[row]:
            if genre >= 0:
                genre_sum += user.genre_taste.get(int(genre), 0.0)
                n_genres += 1
        raw = user.artist_taste.get(artist, 0.0) + genre_sum / max(n_genres, 1)
        return raw / self._total(user)

    def scores(self, user: UserState, items: ItemIndex, size: int, *, now: float) -> np.ndarray:
        """:meth:`item_affinity` for rows ``0 .. size-1`` at once (zeros without a profile)."""
        out = np.zeros(size, dtype=np.float32)
        if not user.artist_taste:
            return out
        total = self._total(user)
        # One extra slot at the end absorbs the -1 "no artist / no genre" index.
        artist_values = np.zeros(len(items.artists) + 1, dtype=np.float32)
        for key, value in user.artist_taste.items():
            artist_values[key] = value / total
        genre_values = np.zeros(len(items.genres) + 1, dtype=np.float32)
        for key, value in user.genre_taste.items():
            genre_values[key] = value / total
        artists = items.artist_of[:size]
        genres = items.genres_of[:size]
        n_genres = np.maximum((genres >= 0).sum(axis=1), 1)
        genre_sum = np.zeros(size, dtype=np.float32)
        for slot in range(MAX_ITEM_GENRES):
            genre_sum += genre_values[genres[:, slot]]
        out[:] = artist_values[artists] + genre_sum / n_genres
        return out

    def top_genres(
        self, user: UserState, items: ItemIndex, k: int, *, now: float
    ) -> list[tuple[str, float]]:
        """The user's ``k`` strongest genre affinities as ``(genre, decayed affinity)``."""
        scale = self._scale(user, now)
        ranked = sorted(user.genre_taste.items(), key=lambda kv: -kv[1])[:k]
        return [(items.genres[key], value * scale) for key, value in ranked]

    def top_artists(
        self, user: UserState, items: ItemIndex, k: int, *, now: float
    ) -> list[tuple[str, float]]:
        """The user's ``k`` strongest artist affinities as ``(artist, decayed affinity)``."""
        scale = self._scale(user, now)
        ranked = sorted(user.artist_taste.items(), key=lambda kv: -kv[1])[:k]
        return [(items.artists[key], value * scale) for key, value in ranked]
