"""Time-decayed popularity, trending and context-aware popularity.

Three decayed counts per item: positive events over a long half-life
(popularity), the same over a short half-life (recent plays), and skips over the
long half-life (for the skip rate). An item *trends* when its recent play rate is
high compared with its long-run rate; a floor on recent plays keeps one-off
blips out. Context popularity keeps the long count per (hour bucket, device), for
users the engine knows nothing about yet.

>>> pop = Popularity(half_life=10.0, trending_half_life=1.0, trending_min_plays=1.0,
...                  hour_buckets=4, max_devices=2)
>>> for t in range(20):
...     pop.learn(0, positive=True, at=float(t), device="mobile")   # steady
>>> for t in range(3):
...     pop.learn(1, positive=True, at=19.0, device="tv")           # sudden burst
>>> pop.top_popular(2, now=19.0), pop.top_trending(1, now=19.0)
([0, 1], [1])
"""

from __future__ import annotations

import numpy as np

from stream.engine.kernels import top_k
from stream.engine.signals import OTHER_DEVICE, hour_bucket, normalise_device
from stream.engine.state import DecayingVector


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first (ties: lower row first).

    >>> top_rows(np.array([0.1, 3.0, -np.inf, 2.0]), 5).tolist()
    [1, 3, 0]
    """
    # One compiled pass with a k-sized buffer: no partition, mask or sort of the catalog.
    return top_k(scores, k)


class Popularity:
    """Decayed popularity, trending ratio and context popularity over item rows.

    Parameters
    ----------
    half_life
        Long-run popularity half-life, seconds.
    trending_half_life
        Short window half-life, seconds.
    trending_min_plays
        Minimum decayed recent plays for an item to trend.
    hour_buckets
        Slices of the UTC day for context popularity.
    max_devices
        Distinct devices tracked for context popularity; later ones share "other".
    """

    #: Whether a context vector made from now on journals its increments (for item
    #: updates: :class:`~stream.engine.item_updates.ItemSync`); False in older pickles.
    journal_new_vectors = False

    def __init__(
        self,
        half_life: float,
        trending_half_life: float,
        trending_min_plays: float,
        hour_buckets: int,
        max_devices: int,
    ) -> None:
        self.half_life = half_life
        self.trending_half_life = trending_half_life
        self.trending_min_plays = trending_min_plays
        self.hour_buckets = hour_buckets
        self.max_devices = max_devices
        self.plays = DecayingVector(half_life)
        self.recent_plays = DecayingVector(trending_half_life)
        self.skips = DecayingVector(half_life)
        self.by_context: dict[tuple[int, str], DecayingVector] = {}
        self.devices: list[str] = []
        self.n_rows = 0
        self.n_events = 0
        self.n_skips = 0
        self.last_time: float | None = None
        self.journal_new_vectors = False

    def _new_vector(self) -> DecayingVector:
        vector = DecayingVector(self.half_life)
        if self.journal_new_vectors:
            vector.journal = {}
        return vector

    def _device(self, device: str | None) -> str:
        name = normalise_device(device)
        if name in self.devices:
            return name
        if len(self.devices) < self.max_devices:
            self.devices.append(name)
            return name
        return OTHER_DEVICE

    def _context_key(self, at: float, device: str | None) -> tuple[int, str]:
        return hour_bucket(at, self.hour_buckets), self._device(device)

    def learn(self, row: int, *, positive: bool, at: float, device: str | None = None) -> None:
        """Count one event on ``row`` at event time ``at``."""
        self.n_rows = max(self.n_rows, row + 1)
        self.n_events += 1
        self.n_skips += not positive
        self.last_time = at if self.last_time is None else max(self.last_time, at)
        if not positive:
            self.skips.add(row, 1.0, at=at)
            return
        self.plays.add(row, 1.0, at=at)
        self.recent_plays.add(row, 1.0, at=at)
        key = self._context_key(at, device)
        counts = self.by_context.get(key)
        if counts is None:
            counts = self.by_context[key] = self._new_vector()
        counts.add(row, 1.0, at=at)

    def context_counts(self, bucket: int, device: str) -> tuple[tuple[int, str], DecayingVector]:
        """The key and counts of context ``(bucket, device)``, created empty if new.

        ``device`` is a device name as another engine keyed it (possibly
        ``"other"``); a device beyond ``max_devices`` shares "other" here too.

        >>> pop = Popularity(half_life=10.0, trending_half_life=1.0, trending_min_plays=1.0,
        ...                  hour_buckets=4, max_devices=1)
        >>> [pop.context_counts(0, device)[0] for device in ("tv", "mobile", "other")]
        [(0, 'tv'), (0, 'other'), (0, 'other')]
        """
        if not 0 <= bucket < self.hour_buckets:
            raise ValueError(f"hour bucket {bucket} outside 0..{self.hour_buckets - 1}")
        key = (bucket, OTHER_DEVICE if device == OTHER_DEVICE else self._device(device))
        counts = self.by_context.get(key)
        if counts is None:
            counts = self.by_context[key] = self._new_vector()
        return key, counts

    def forget_item(self, row: int) -> None:
        for vector in (self.plays, self.recent_plays, self.skips, *self.by_context.values()):
            vector.forget(row)

    # ------------------------------------------------------------------ reads
    def play_count(self, row: int, *, now: float) -> float:
        """Decayed long-run positive count of ``row``."""
        return self.plays.value(row, now=now)

    def recent_play_count(self, row: int, *, now: float) -> float:
        return self.recent_plays.value(row, now=now)

    @property
    def skip_share(self) -> float:
        """Share of skips among all events so far (0.5 before any)."""
        return (self.n_skips + 1.0) / (self.n_events + 2.0)

    def skip_rate(self, row: int, *, now: float, prior: float = 4.0) -> float:
        """Share of skips among the item's decayed events, shrunk towards :attr:`skip_share`.

        ``prior`` events at the global rate are added, so an item with few events
        is not judged on one or two skips.
        """
        skips = self.skips.value(row, now=now)
        plays = self.plays.value(row, now=now)
        return (skips + prior * self.skip_share) / (skips + plays + prior)

    def skip_rates(self, rows: np.ndarray, *, now: float, prior: float = 4.0) -> np.ndarray:
        """:meth:`skip_rate` of many rows."""
        size = int(rows.max()) + 1 if len(rows) else 0
        skips = self.skips.raw(size)[rows] * self.skips.scale(now)
        plays = self.plays.raw(size)[rows] * self.plays.scale(now)
        return (skips + prior * self.skip_share) / (skips + plays + prior)

    def popularity_vector(self, size: int, *, now: float) -> np.ndarray:
        return self.plays.vector(size, now=now)

    def trending_vector(self, size: int, *, now: float) -> np.ndarray:
        """Recent play rate over long-run play rate; ``-inf`` below the floor."""
        recent = self.recent_plays.vector(size, now=now)
        long_run = self.plays.vector(size, now=now)
        # Rates per half-life make the two windows comparable; the floor on the long rate
        # stops an item with almost no history from getting an enormous ratio.
        recent_rate = recent / self.trending_half_life
        long_rate = np.maximum(long_run / self.half_life, self.trending_min_plays / self.half_life)
        scores = recent_rate / long_rate * np.log1p(recent)
        scores[recent < self.trending_min_plays] = -np.inf
        return scores

    def context_vector(self, size: int, *, now: float, device: str | None) -> np.ndarray:
        """Popularity in the hour bucket of ``now`` on ``device``, blended with overall."""
        overall = self.plays.vector(size, now=now)
        name = normalise_device(device)
        key = (hour_bucket(now, self.hour_buckets), name if name in self.devices else OTHER_DEVICE)
        counts = self.by_context.get(key)
        if counts is None:
            return overall
        local = counts.vector(size, now=now)
        total_local = local.sum()
        total = overall.sum()
        if total_local <= 0 or total <= 0:
            return overall
        # Shares rather than counts, so a sparse context does not just echo the global chart.
        return 0.7 * local / total_local + 0.3 * overall / total

    def top_popular(self, k: int, *, now: float) -> list[int]:
        scores = self.popularity_vector(self.n_rows, now=now)
        scores[scores <= 0] = -np.inf
        return top_rows(scores, k).tolist()

    def top_trending(self, k: int, *, now: float) -> list[int]:
        return top_rows(self.trending_vector(self.n_rows, now=now), k).tolist()
