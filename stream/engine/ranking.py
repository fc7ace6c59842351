"""Arrays the compiled Top picks kernel reads, kept between rankings (never pickled).

:func:`~stream.engine.kernels.top_picks` ranks one user in one call; what it
needs besides the models' own arrays lives here:

- the candidate sources as flat arrays: the head of the popular chart and each
  genre's most played items (converted once per chart refresh, not per call),
  and the last items of every artist (kept up to date per catalog change);
- scratch space over item rows: a stamp per row marks the user's seen items and
  the candidates taken so far, so no per-call array of catalog size is cleared.

Everything here is derived from the engine's state: a snapshot carries none of
it and a restored engine rebuilds it on first use.

>>> import numpy as np
>>> from stream.engine.state import ItemIndex
>>> from stream.models import CatalogItem
>>> items = ItemIndex()
>>> for n in range(3):
...     _ = items.upsert(CatalogItem(f"t{n}", "T", "Aurora Fields", ("ambient",), 1, 0.0))
>>> cache = RankingCache()
>>> tails, sizes = cache.artist_tails(items, 2)
>>> tails[0, : sizes[0]].tolist()
[1, 2]
>>> cache.genre_sources([np.array([2, 0]), np.array([1])])[0].tolist()
[2, 0, 1]
"""

from __future__ import annotations

import numpy as np

from stream.engine.state import ItemIndex

#: Stamps are int32: start over (one clear) well before the tag would overflow.
_MAX_TAG = 2**30


class RankingCache:
    """Derived arrays and scratch space of the Top picks kernel (see the module docstring).

    Not state: pickles as empty (a snapshot leaves it out) and refills on use.
    """

    def __init__(self) -> None:
        self.stamps = np.zeros(0, dtype=np.int32)
        self.cooc = np.zeros(0, dtype=np.float64)
        self.seed = np.zeros(0, dtype=np.int64)
        self.strength = np.zeros(0, dtype=np.float64)
        self.tag = 0
        self._popular_of: list[int] | None = None
        self._popular = np.zeros(0, dtype=np.int64)
        self._genres_of: list[np.ndarray] | None = None
        self._genre_rows = np.zeros(0, dtype=np.int64)
        self._genre_starts = np.zeros(1, dtype=np.int64)
        self._tails: np.ndarray | None = None
        self._tail_sizes = np.zeros(0, dtype=np.int64)
        self._dirty_artists: set[int] = set()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]

    def scratch(self, size: int) -> int:
        """Make the scratch arrays cover ``size`` rows; return this call's tag.

        Rows stamped ``tag`` are the user's seen ones, ``tag + 1`` the candidates.
        """
        if len(self.stamps) < size:
            capacity = max(size, 2 * len(self.stamps), 64)
            self.stamps = np.zeros(capacity, dtype=np.int32)
            self.cooc = np.zeros(capacity, dtype=np.float64)
            self.seed = np.zeros(capacity, dtype=np.int64)
            self.strength = np.zeros(capacity, dtype=np.float64)
            self.tag = 0
        self.tag += 2
        if self.tag >= _MAX_TAG:
            self.stamps[:] = 0
            self.tag = 2
        return self.tag

    def popular(self, popular_rows: list[int], limit: int) -> np.ndarray:
        """The first ``limit`` rows of the popular chart, converted once per chart."""
        if self._popular_of is not popular_rows:
            self._popular = np.asarray(popular_rows[:limit], dtype=np.int64)
            self._popular_of = popular_rows
        return self._popular

    def genre_sources(self, popular_by_genre: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each genre's most played rows one after the other, and where each genre starts."""
        if self._genres_of is not popular_by_genre:
            sizes = [len(rows) for rows in popular_by_genre]
            self._genre_starts = np.zeros(len(sizes) + 1, dtype=np.int64)
            np.cumsum(sizes, out=self._genre_starts[1:])
            self._genre_rows = (
                np.concatenate(popular_by_genre).astype(np.int64)
                if popular_by_genre
                else np.zeros(0, dtype=np.int64)
            )
            self._genres_of = popular_by_genre
        return self._genre_rows, self._genre_starts

    def catalog_changed(self, *artists: int) -> None:
        """Artists whose item lists changed (their tails are rebuilt on next use)."""
        if self._tails is not None:
            self._dirty_artists.update(artist for artist in artists if artist >= 0)

    def artist_tails(self, items: ItemIndex, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``depth`` rows of each artist (a row per artist) and how many there are."""
        n_artists = len(items.artist_items)
        tails = self._tails
        if tails is None or tails.shape[1] != depth or len(self._tail_sizes) < n_artists:
            capacity = max(n_artists, 2 * (0 if tails is None else len(tails)), 16)
            self._tails = np.full((capacity, depth), -1, dtype=np.int64)
            self._tail_sizes = np.zeros(capacity, dtype=np.int64)
            self._dirty_artists = set(range(n_artists))
        for artist in self._dirty_artists:
            if artist < n_artists:
                tail = items.artist_items[artist][-depth:]
                self._tails[artist, : len(tail)] = tail
                self._tail_sizes[artist] = len(tail)
        self._dirty_artists.clear()
        assert self._tails is not None
        return self._tails, self._tail_sizes[:n_artists]
