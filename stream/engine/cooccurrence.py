"""Item-to-item co-occurrence with decay: "Because you played X".

When a user plays an item, it is paired with that user's few previous positive
events; pairs in the same listening session (no gap longer than
``session_gap``) count fully, pairs across sessions half, and nearer
predecessors more than farther ones. Pair strengths decay with a half-life, and
each item keeps only its ``max_neighbours`` strongest neighbours.

>>> cooc = Cooccurrence(half_life=100.0, window=3, session_gap=60.0,
...                     max_neighbours=5, damping=0.0)
>>> cooc.learn(1, 1.0, at=1.0, previous=[(0, 1.0, 0.0)])
>>> cooc.learn(2, 1.0, at=2.0, previous=[(1, 1.0, 1.0), (0, 1.0, 0.0)])
>>> [row for row, _ in cooc.neighbours(0, 5, now=2.0)]
[1, 2]
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np

from stream.engine.kernels import cooc_learn, cooc_sums
from stream.engine.state import DecayingVector, decay_scale, forward_decay, grown

_MAX_EXPONENT = 60.0


class Cooccurrence:
    """Decayed, bounded item-item co-occurrence over item rows.

    Parameters
    ----------
    half_life
        Seconds after which a pair's strength counts half.
    window
        How many of the user's previous positive events pair with a new one.
    session_gap
        A silence longer than this (seconds) starts a new session.
    max_neighbours
        Neighbours kept per item (the strongest).
    damping
        Neighbour scores are divided by ``neighbour_popularity ** damping``, so that
        very popular items do not become everyone's neighbour.

    Notes
    -----
    Each item's neighbours live in one row of two fixed-width arrays (rows and
    forward-decayed strengths, ``max_neighbours * 3 // 2 + 1`` slots, the first
    ``counts[row]`` in use), so that a compiled kernel updates every pair of an
    event in one call; a full row is pruned to the ``max_neighbours`` strongest.
    """

    def __init__(
        self,
        half_life: float,
        window: int,
        session_gap: float,
        max_neighbours: int,
        damping: float,
    ) -> None:
        self.half_life = half_life
        self.window = window
        self.session_gap = session_gap
        self.max_neighbours = max_neighbours
        self.damping = damping
        width = max_neighbours + max_neighbours // 2 + 1
        self.neighbour_rows = np.zeros((0, width), dtype=np.int32)
        self.strengths = np.zeros((0, width), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.int32)
        self.totals = DecayingVector(half_life)
        self.origin: float | None = None

    def _factor(self, at: float) -> float:
        self.origin, factor, rescale = forward_decay(self.origin, at, self.half_life)
        if rescale != 1.0:
            self.strengths *= rescale
        return factor

    def _reserve(self, size: int) -> None:
        if size > len(self.counts):
            self.neighbour_rows = grown(self.neighbour_rows, size)
            self.strengths = grown(self.strengths, size)
            self.counts = grown(self.counts, size)

    def neighbours_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Kept neighbour rows of ``row`` and their stored (undecayed) strengths, as views."""
        if row >= len(self.counts):
            return self.neighbour_rows[:0, 0], self.strengths[:0, 0]
        n = int(self.counts[row])
        return self.neighbour_rows[row, :n], self.strengths[row, :n]

    def learn(
        self, row: int, weight: float, *, at: float, previous: Iterable[tuple[int, float, float]]
    ) -> None:
        """Pair a positive event on ``row`` with the user's previous events.

        Parameters
        ----------
        row
            The item just played.
        weight
            Its signal weight (only positive events should be passed).
        at
            Event time.
        previous
            The user's earlier ``(row, weight, time)`` events, newest first; only
            the first ``window`` positive ones are used.
        """
        events = list(previous)[::-1]  # oldest first: a ring buffer that never wrapped
        self.learn_recent(
            row,
            weight,
            at=at,
            rows=array("i", [other for other, _, _ in events]),
            weights=array("f", [other_weight for _, other_weight, _ in events]),
            times=array("d", [other_time for _, _, other_time in events]),
            n_recent=len(events),
        )

    def learn_recent(
        self,
        row: int,
        weight: float,
        *,
        at: float,
        rows: array,
        weights: array,
        times: array,
        n_recent: int,
        size: int | None = None,
    ) -> None:
        """:meth:`learn` with the previous events as a ring buffer (no per-event tuples).

        ``rows`` / ``weights`` / ``times`` are the ring of
        :class:`~stream.engine.state.UserState` (``n_recent`` events ever written);
        ``size``, when given, bounds every row involved (the item count).
        """
        if weight <= 0:
            return
        factor = self._factor(at)
        self.totals.add(row, weight, at=at)
        needed = size if size is not None else max(row, max(rows, default=-1)) + 1
        self._reserve(needed)
        cooc_learn(
            self.neighbour_rows,
            self.strengths,
            self.counts,
            row,
            weight,
            factor,
            at,
            rows,
            weights,
            times,
            n_recent,
            self.window,
            self.session_gap,
            self.max_neighbours,
        )

    def forget_item(self, row: int) -> None:
        if row < len(self.counts):
            self.counts[row] = 0
        self.totals.forget(row)

    def scale_at(self, now: float) -> float:
        return decay_scale(self.origin, now, self.half_life)

    def strength(self, row: int, other: int, *, now: float) -> float:
        """Damped co-occurrence score of ``other`` as a neighbour of ``row``."""
        rows, values = self.neighbours_of(row)
        found = np.flatnonzero(rows == other)
        if not len(found):
            return 0.0
        value = float(values[found[0]]) * self.scale_at(now)
        if self.damping:
            value /= max(self.totals.value(other, now=now), 1.0) ** self.damping
        return value

    def _scored(self, row: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        kept, strengths = self.neighbours_of(row)
        if not len(kept):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = kept.astype(np.int64)
        values = strengths * self.scale_at(now)
        if self.damping:
            totals = self.totals.raw(int(rows.max()) + 1)[rows] * self.totals.scale(now)
            values /= np.maximum(totals, 1.0) ** self.damping
        return rows, values

    def neighbours(self, row: int, k: int, *, now: float) -> list[tuple[int, float]]:
        """Up to ``k`` neighbours of ``row``, strongest first, as ``(row, score)``."""
        rows, values = self._scored(row, now)
        order = np.lexsort((rows, -values))[:k]
        return list(zip(rows[order].tolist(), values[order].tolist(), strict=True))

    def candidates(
        self, seeds: Iterable[tuple[int, float]], *, now: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour scores summed over weighted seed items, as ``(rows, scores)`` arrays.

        Rows come sorted and distinct.

        Examples
        --------
        >>> cooc = Cooccurrence(half_life=100.0, window=3, session_gap=60.0,
        ...                     max_neighbours=5, damping=0.0)
        >>> cooc.learn(1, 1.0, at=0.0, previous=[(0, 1.0, 0.0)])
        >>> cooc.learn(2, 1.0, at=0.0, previous=[(0, 1.0, 0.0)])
        >>> rows, scores = cooc.candidates([(0, 1.0), (1, 0.5)], now=0.0)
        >>> rows.tolist(), scores.tolist()
        ([0, 1, 2], [0.5, 1.0, 1.0])
        """
        seed_list = [(seed, seed_weight) for seed, seed_weight in seeds if seed < len(self.counts)]
        if not seed_list:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        seed_rows = np.array([seed for seed, _ in seed_list], dtype=np.int64)
        lengths = self.counts[seed_rows].astype(np.int64)
        if not lengths.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        # The seeds' neighbour lists one after the other (the first ``counts`` slots of each).
        in_use = np.arange(self.neighbour_rows.shape[1]) < lengths[:, None]
        rows = self.neighbour_rows[seed_rows][in_use]
        # One compiled pass weighs, damps and sums every seed's neighbours.
        return cooc_sums(
            rows,
            self.strengths[seed_rows][in_use],
            lengths,
            np.array([seed_weight for _, seed_weight in seed_list], dtype=np.float64),
            np.argsort(rows, kind="stable"),
            self.totals.values,
            self.totals.scale(now),
            self.scale_at(now),
            float(self.damping),
        )
