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

from stream.engine.kernels import cooc_add_pairs, cooc_learn, cooc_sums
from stream.engine.state import DecayingVector, decay_scale, forward_decay, grown

_MAX_EXPONENT = 60.0
#: No journal: what :func:`~stream.engine.kernels.cooc_learn` gets when nothing is recorded.
_NO_JOURNAL = np.zeros((0, 4))


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
        journal: PairJournal | None = None,
    ) -> None:
        """:meth:`learn` with the previous events as a ring buffer (no per-event tuples).

        ``rows`` / ``weights`` / ``times`` are the ring of
        :class:`~stream.engine.state.UserState` (``n_recent`` events ever written);
        ``size``, when given, bounds every row involved (the item count). Every
        pair increment is also recorded in ``journal`` when one is given.
        """
        if weight <= 0:
            return
        factor = self._factor(at)
        self.totals.add(row, weight, at=at)
        needed = size if size is not None else max(row, max(rows, default=-1)) + 1
        self._reserve(needed)
        if journal is None:
            entries, n_entries = _NO_JOURNAL, -1
        else:
            journal.reserve(self.window)
            entries, n_entries = journal.entries, journal.n
        n_entries = cooc_learn(
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
            entries,
            n_entries,
        )
        if journal is not None:
            journal.n = n_entries

    def add_pairs(
        self, firsts: np.ndarray, seconds: np.ndarray, amounts: np.ndarray, *, at: float
    ) -> None:
        """Add pair increments learned elsewhere, each valued at event time ``at``.

        ``amounts[i]`` goes to ``firsts[i]``'s strength as a neighbour of
        ``seconds[i]`` and the other way round, as :meth:`learn` does for each pair.
        Item totals (the damping) are not touched: add them to :attr:`totals`.

        >>> cooc = Cooccurrence(half_life=100.0, window=3, session_gap=60.0,
        ...                     max_neighbours=5, damping=0.0)
        >>> cooc.add_pairs(np.array([0]), np.array([1]), np.array([2.0]), at=100.0)
        >>> cooc.neighbours(1, 5, now=200.0)
        [(0, 1.0)]
        """
        if not len(firsts):
            return
        factor = self._factor(at)
        self._reserve(int(max(firsts.max(), seconds.max())) + 1)
        cooc_add_pairs(
            self.neighbour_rows,
            self.strengths,
            self.counts,
            firsts.astype(np.int64),
            seconds.astype(np.int64),
            amounts.astype(np.float64) * factor,
            self.max_neighbours,
        )

    def kept_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every kept pair once, as ``(first, second, stored strength)`` with first < second.

        A pair is kept in both rows' lists, with the same strength unless one side
        pruned it meanwhile; the lower row's entry speaks for it, or the higher
        row's when only that one is left.
        """
        size = len(self.counts)
        in_use = np.arange(self.neighbour_rows.shape[1]) < self.counts[:, None]
        rows = np.repeat(np.arange(size, dtype=np.int64), self.counts)
        others = self.neighbour_rows[:size][in_use].astype(np.int64)
        strengths = self.strengths[:size][in_use].astype(np.float64)
        forward = rows < others
        mirrored = np.isin(others * size + rows, rows[forward] * size + others[forward])
        keep = forward | ~mirrored
        first = np.minimum(rows, others)[keep]
        second = np.maximum(rows, others)[keep]
        return first, second, strengths[keep]

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


class PairJournal:
    """Co-occurrence pair increments recorded as learned, until taken.

    Entries are ``(first, second, amount, at)``: ``amount`` added to the pair in
    both directions at event time ``at`` (before decay). :meth:`coalesced` sums
    them per pair, valued at one reference time. Memory stays bounded when nobody
    takes them: a full journal is coalesced in place, and past ``limit`` distinct
    pairs only the ``limit // 2`` strongest are kept (the others are lost).

    Parameters
    ----------
    half_life
        Of the co-occurrence the increments belong to (to value them at one time).
    limit
        Most entries kept.

    Examples
    --------
    >>> journal = PairJournal(half_life=10.0)
    >>> journal.append(np.array([2, 1]), np.array([1, 2]), np.array([1.0, 1.0]), at=0.0)
    >>> journal.append(np.array([3]), np.array([1]), np.array([4.0]), at=10.0)
    >>> first, second, amount = journal.coalesced(at=10.0)
    >>> first.tolist(), second.tolist(), amount.tolist()
    ([1, 1], [2, 3], [1.0, 4.0])
    """

    def __init__(self, half_life: float, limit: int = 1 << 20) -> None:
        self.half_life = half_life
        self.limit = limit
        self.entries = np.zeros((64, 4))
        self.n = 0

    def __getstate__(self) -> dict:
        # Only the entries in use are state (the rest is capacity).
        state = self.__dict__.copy()
        state["entries"] = self.entries[: max(self.n, 1)].copy()
        return state

    def __len__(self) -> int:
        return self.n

    def reserve(self, count: int) -> None:
        """Make room for ``count`` more entries."""
        if self.n + count <= len(self.entries):
            return
        if self.n >= 1 << 16:
            self._compact()
        if self.n + count > len(self.entries) // 2:
            capacity = max(2 * len(self.entries), self.n + count)
            bigger = np.zeros((capacity, 4))
            bigger[: self.n] = self.entries[: self.n]
            self.entries = bigger

    def append(
        self, firsts: np.ndarray, seconds: np.ndarray, amounts: np.ndarray, *, at: float
    ) -> None:
        """Record increments of ``amounts`` (valued at ``at``) to pairs ``(firsts, seconds)``."""
        self.reserve(len(firsts))
        block = self.entries[self.n : self.n + len(firsts)]
        block[:, 0] = firsts
        block[:, 1] = seconds
        block[:, 2] = amounts
        block[:, 3] = at
        self.n += len(firsts)

    def coalesced(self, *, at: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Increments summed per pair, valued at event time ``at``: ``(first, second, amount)``.

        ``first < second``; pairs sorted; amounts float64.
        """
        entries = self.entries[: self.n]
        first = np.minimum(entries[:, 0], entries[:, 1]).astype(np.int64)
        second = np.maximum(entries[:, 0], entries[:, 1]).astype(np.int64)
        # Valued at ``at``: w * 2 ** ((t - at) / half_life); entries later than ``at`` grow.
        amount = entries[:, 2] * np.exp2((entries[:, 3] - at) / self.half_life)
        key = first * (int(second.max(initial=0)) + 1) + second
        keys, position = np.unique(key, return_inverse=True)
        sums = np.zeros(len(keys))
        np.add.at(sums, position, amount)
        starts = np.zeros(len(keys), dtype=np.int64)
        starts[position] = np.arange(len(key))
        return first[starts], second[starts], sums

    def clear(self) -> None:
        self.n = 0

    def _compact(self) -> None:
        at = float(self.entries[: self.n, 3].max())
        first, second, amount = self.coalesced(at=at)
        if len(amount) > self.limit:
            strongest = np.sort(np.argsort(-amount, kind="stable")[: self.limit // 2])
            first, second, amount = first[strongest], second[strongest], amount[strongest]
        self.n = 0
        self.append(first, second, amount, at=at)
