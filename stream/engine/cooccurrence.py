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

from stream.engine.kernels import cooc_sums
from stream.engine.state import DecayingVector

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
        # row -> (neighbour rows, forward-decayed strengths): two compact arrays per item.
        self.pairs: dict[int, tuple[array, array]] = {}
        self.totals = DecayingVector(half_life)
        self.origin: float | None = None

    def _factor(self, at: float) -> float:
        if self.origin is None:
            self.origin = at
        exponent = (at - self.origin) / self.half_life
        if exponent > _MAX_EXPONENT:
            shrink = 2.0 ** (-exponent)
            for _, values in self.pairs.values():
                np.frombuffer(values, dtype=np.float32)[:] *= shrink
            self.origin = at
            exponent = 0.0
        return float(2.0**exponent)

    def _bump(self, row: int, other: int, amount: float) -> None:
        entry = self.pairs.get(row)
        if entry is None:
            entry = self.pairs[row] = (array("i"), array("f"))
        rows, values = entry
        if other in rows:
            values[rows.index(other)] += amount
            return
        rows.append(other)
        values.append(amount)
        # Prune in batches (amortised), keeping the strongest neighbours.
        if len(rows) > self.max_neighbours + self.max_neighbours // 2:
            keep = sorted(range(len(rows)), key=lambda i: (-values[i], rows[i]))
            keep = keep[: self.max_neighbours]
            self.pairs[row] = (
                array("i", [rows[i] for i in keep]),
                array("f", [values[i] for i in keep]),
            )

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
        if weight <= 0:
            return
        factor = self._factor(at)
        self.totals.add(row, weight, at=at)
        paired = 0
        later_time = at
        session_factor = 1.0
        for other, other_weight, other_time in previous:
            if paired >= self.window:
                break
            if later_time - other_time > self.session_gap:
                session_factor = 0.5
            later_time = other_time
            if other_weight <= 0 or other == row:
                continue
            amount = min(weight, other_weight) * session_factor / (1.0 + 0.5 * paired) * factor
            self._bump(other, row, amount)
            self._bump(row, other, amount)
            paired += 1

    def forget_item(self, row: int) -> None:
        self.pairs.pop(row, None)
        self.totals.forget(row)

    def _scale(self, now: float) -> float:
        if self.origin is None:
            return 0.0
        return float(2.0 ** (-(now - self.origin) / self.half_life))

    def strength(self, row: int, other: int, *, now: float) -> float:
        """Damped co-occurrence score of ``other`` as a neighbour of ``row``."""
        entry = self.pairs.get(row)
        if entry is None or other not in entry[0]:
            return 0.0
        rows, values = entry
        value = values[rows.index(other)] * self._scale(now)
        if self.damping:
            value /= max(self.totals.value(other, now=now), 1.0) ** self.damping
        return value

    def _scored(self, row: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        entry = self.pairs.get(row)
        if entry is None or not entry[0]:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = np.frombuffer(entry[0], dtype=np.int32).astype(np.int64)
        values = np.frombuffer(entry[1], dtype=np.float32) * self._scale(now)
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
        row_parts: list[np.ndarray] = []
        value_parts: list[np.ndarray] = []
        seed_parts: list[float] = []
        for seed, seed_weight in seeds:
            entry = self.pairs.get(seed)
            if entry is not None and entry[0]:
                row_parts.append(np.frombuffer(entry[0], dtype=np.int32))
                value_parts.append(np.frombuffer(entry[1], dtype=np.float32))
                seed_parts.append(seed_weight)
        if not row_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        # One compiled pass weighs, damps and sums every seed's neighbours.
        rows = np.concatenate(row_parts)
        return cooc_sums(
            rows,
            np.concatenate(value_parts),
            np.array([len(part) for part in row_parts], dtype=np.int64),
            np.array(seed_parts, dtype=np.float64),
            np.argsort(rows, kind="stable"),
            self.totals.values,
            self.totals.scale(now),
            self._scale(now),
            float(self.damping),
        )
