"""Shared building blocks of the engine's state: item index, decaying counters, user state.

Items get a dense integer *row* the first time they are seen (in an event or in
the catalog), so that every per-item statistic is a numpy array indexed by row
and scoring the whole catalog is a handful of vector operations.

>>> index = ItemIndex()
>>> index.add("a"), index.add("b"), index.add("a")
(0, 1, 0)
>>> index.remove("a")
True
>>> index.active[:2].tolist()
[False, True]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stream.models import CatalogItem

#: Rescale forward-decayed values before ``2 ** exponent`` gets anywhere near float64's limit.
_MAX_EXPONENT = 60.0
#: How many genres of an item are kept (the first ones are the most specific).
MAX_ITEM_GENRES = 3


def grown(array: np.ndarray, size: int, fill: float | int | bool = 0) -> np.ndarray:
    """``array`` itself if it already holds ``size`` rows, else a larger copy (doubled, >= 64).

    >>> small = np.zeros(2)
    >>> grown(small, 2) is small, grown(small, 3).shape
    (True, (64,))
    """
    if size <= len(array):
        return array
    capacity = max(size, 2 * len(array), 64)
    bigger = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class DecayingVector:
    """Per-row counters that halve every ``half_life`` seconds of event time.

    Uses forward decay: an update of weight ``w`` at time ``t`` adds
    ``w * 2 ** ((t - origin) / half_life)``, so stored values never need to be
    touched to age them; reading divides by the same factor at ``now``. The
    origin moves forward (one rescale of the array) before the factor overflows.

    Parameters
    ----------
    half_life
        Seconds after which a contribution counts half.

    Examples
    --------
    >>> counts = DecayingVector(half_life=10.0)
    >>> counts.add(3, 1.0, at=0.0)
    >>> counts.value(3, now=10.0), counts.value(3, now=20.0), counts.value(0, now=20.0)
    (0.5, 0.25, 0.0)
    """

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self.values = np.zeros(0, dtype=np.float64)
        self.origin: float | None = None

    def _factor(self, at: float) -> float:
        if self.origin is None:
            self.origin = at
        exponent = (at - self.origin) / self.half_life
        if exponent > _MAX_EXPONENT:
            self.values *= 2.0 ** (-exponent)
            self.origin = at
            exponent = 0.0
        return float(2.0**exponent)

    def add(self, row: int, weight: float, *, at: float) -> None:
        """Add ``weight`` to ``row`` at event time ``at``."""
        factor = self._factor(at)
        if row >= len(self.values):
            self.values = grown(self.values, row + 1)
        self.values[row] += weight * factor

    def scale(self, now: float) -> float:
        """Multiply stored values by this to read them at ``now``."""
        if self.origin is None:
            return 0.0
        return float(2.0 ** (-(now - self.origin) / self.half_life))

    def value(self, row: int, *, now: float) -> float:
        """Decayed value of one row at ``now`` (0 for rows never updated)."""
        if row >= len(self.values):
            return 0.0
        return float(self.values[row]) * self.scale(now)

    def vector(self, size: int, *, now: float) -> np.ndarray:
        """Decayed values of rows ``0 .. size-1`` at ``now`` (a new array)."""
        out = np.zeros(size, dtype=np.float64)
        n = min(size, len(self.values))
        out[:n] = self.values[:n] * self.scale(now)
        return out

    def raw(self, size: int) -> np.ndarray:
        """Stored (undecayed) values padded to ``size`` rows, without copying."""
        if len(self.values) < size:
            self.values = grown(self.values, size)
        return self.values[:size]

    def forget(self, row: int) -> None:
        if row < len(self.values):
            self.values[row] = 0.0


class ItemIndex:
    """Dense rows for item ids, plus what the catalog says about each item.

    Items may first appear in an event, with no metadata; :meth:`upsert` fills in
    title, artist, genres, duration and release date later. Removed items keep
    their row (statistics stay aligned) but are flagged inactive.

    Examples
    --------
    >>> from stream.models import CatalogItem
    >>> index = ItemIndex()
    >>> row = index.upsert(CatalogItem("t1", "Northern Lights", "Aurora Fields",
    ...                                ("ambient", "electronic"), 200_000, 0.0))
    >>> index.label(row), index.artist_name(row), index.genre_names(row)
    ('Northern Lights', 'Aurora Fields', ['ambient', 'electronic'])
    >>> index.label(index.add("t2"))
    't2'
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.catalog: list[CatalogItem | None] = []
        self.active = np.zeros(0, dtype=bool)
        self.released_at = np.zeros(0, dtype=np.float64)
        self.artist_of = np.zeros(0, dtype=np.int32)
        self.genres_of = np.zeros((0, MAX_ITEM_GENRES), dtype=np.int32)
        self.duration_ms = np.zeros(0, dtype=np.int32)
        self.artists: list[str] = []
        self.artist_rows: dict[str, int] = {}
        self.genres: list[str] = []
        self.genre_rows: dict[str, int] = {}
        self.n_catalog = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.rows

    def row(self, item_id: str) -> int | None:
        return self.rows.get(item_id)

    def add(self, item_id: str) -> int:
        """Row of ``item_id``, creating an active row with no metadata if new."""
        row = self.rows.get(item_id)
        if row is not None:
            return row
        row = len(self.ids)
        self.ids.append(item_id)
        self.rows[item_id] = row
        self.catalog.append(None)
        if row >= len(self.active):
            size = row + 1
            self.active = grown(self.active, size, False)
            self.released_at = grown(self.released_at, size, np.nan)
            self.artist_of = grown(self.artist_of, size, -1)
            self.genres_of = grown(self.genres_of, size, -1)
            self.duration_ms = grown(self.duration_ms, size, 0)
        self.active[row] = True
        return row

    def _artist_row(self, artist: str) -> int:
        row = self.artist_rows.get(artist)
        if row is None:
            row = self.artist_rows[artist] = len(self.artists)
            self.artists.append(artist)
        return row

    def _genre_row(self, genre: str) -> int:
        row = self.genre_rows.get(genre)
        if row is None:
            row = self.genre_rows[genre] = len(self.genres)
            self.genres.append(genre)
        return row

    def upsert(self, item: CatalogItem) -> int:
        """Add or update catalog metadata; re-activates a removed item."""
        row = self.add(item.item_id)
        if self.catalog[row] is None:
            self.n_catalog += 1
        self.catalog[row] = item
        self.active[row] = True
        self.released_at[row] = item.released_at
        self.artist_of[row] = self._artist_row(item.artist)
        self.genres_of[row] = -1
        for slot, genre in enumerate(item.genres[:MAX_ITEM_GENRES]):
            self.genres_of[row, slot] = self._genre_row(genre)
        self.duration_ms[row] = item.duration_ms
        return row

    def remove(self, item_id: str) -> bool:
        """Withdraw an item: it keeps its row but is never recommended again."""
        row = self.rows.get(item_id)
        if row is None or not self.active[row]:
            return False
        self.active[row] = False
        return True

    def label(self, row: int) -> str:
        """Title when known, else the id (for reasons a person reads)."""
        item = self.catalog[row]
        return item.title if item is not None else self.ids[row]

    def artist_name(self, row: int) -> str | None:
        item = self.catalog[row]
        return item.artist if item is not None else None

    def genre_names(self, row: int) -> list[str]:
        item = self.catalog[row]
        return list(item.genres[:MAX_ITEM_GENRES]) if item is not None else []

    def catalog_duration(self, row: int) -> int | None:
        duration = int(self.duration_ms[row])
        return duration or None

    @property
    def has_catalog(self) -> bool:
        return self.n_catalog > 0


@dataclass(slots=True)
class UserState:
    """What the engine remembers about one user, bounded in size.

    ``seen`` holds every item the user ever interacted with (needed to recommend
    only new items); the other histories are ring buffers of the last
    ``capacity`` events.

    Examples
    --------
    >>> user = UserState.empty(capacity=2)
    >>> for row, weight, at in [(5, 1.0, 1.0), (6, -1.0, 2.0), (7, 0.9, 3.0)]:
    ...     user.remember(row, weight, at)
    >>> user.has_seen(5), user.has_seen(8), user.recent()
    (True, False, [(6, -1.0, 2.0), (7, 0.9, 3.0)])
    """

    seen: np.ndarray
    n_seen: int
    recent_rows: np.ndarray
    recent_weights: np.ndarray
    recent_times: np.ndarray
    n_recent: int
    plays: int = 0
    skips: int = 0
    replays: int = 0
    last_event_id: str | None = None
    last_event_at: float | None = None
    taste_origin: float | None = None
    genre_taste: dict[int, float] = field(default_factory=dict)
    artist_taste: dict[int, float] = field(default_factory=dict)
    discover_arms: dict[int, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, capacity: int) -> UserState:
        return cls(
            seen=np.zeros(8, dtype=np.int32),
            n_seen=0,
            recent_rows=np.full(capacity, -1, dtype=np.int32),
            recent_weights=np.zeros(capacity, dtype=np.float32),
            recent_times=np.zeros(capacity, dtype=np.float64),
            n_recent=0,
        )

    @property
    def n_events(self) -> int:
        return self.plays + self.skips + self.replays

    def has_seen(self, row: int) -> bool:
        return bool((self.seen[: self.n_seen] == row).any())

    def seen_rows(self) -> np.ndarray:
        return self.seen[: self.n_seen]

    def remember(self, row: int, weight: float, at: float) -> None:
        """Record one event in the seen set and the recent ring buffer."""
        if not self.has_seen(row):
            if self.n_seen >= len(self.seen):
                self.seen = grown(self.seen, self.n_seen + 1)
            self.seen[self.n_seen] = row
            self.n_seen += 1
        slot = self.n_recent % len(self.recent_rows)
        self.recent_rows[slot] = row
        self.recent_weights[slot] = weight
        self.recent_times[slot] = at
        self.n_recent += 1

    def recent(self) -> list[tuple[int, float, float]]:
        """``(row, weight, time)`` of the kept recent events, oldest first."""
        capacity = len(self.recent_rows)
        count = min(self.n_recent, capacity)
        start = self.n_recent - count
        out = []
        for position in range(start, self.n_recent):
            slot = position % capacity
            out.append(
                (
                    int(self.recent_rows[slot]),
                    float(self.recent_weights[slot]),
                    float(self.recent_times[slot]),
                )
            )
        return out


def decay_factor(elapsed: float, half_life: float) -> float:
    """``0.5 ** (elapsed / half_life)``.

    >>> decay_factor(20.0, 10.0)
    0.25
    """
    return math.pow(0.5, elapsed / half_life)
