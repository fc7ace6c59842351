"""Item-to-item co-occurrence with decay: "Because you played X".

When a user plays an item, it is paired with that user's few previous positive
events; pairs in the same listening session (no gap longer than
``session_gap``) count fully, pairs across sessions half, and nearer
predecessors more than farther ones. Pair strengths decay with a half-life, and
each item keeps only its ``max_neighbours`` strongest neighbours.

>>> cooc = Cooccurrence(half_life=100.0, window=3, session_gap=60.0,
...                     max_neighbours=5, damping=0.0)
>>> cooc.learn(1, 1.0, at=1.0, previous=[(0, 1.0, 0.0)])
>>> cooc.learn(2, 1.0, at=2.0, previous=[(0, 1.0, 0.0), (1, 1.0, 1.0)])
>>> [row for row, _ in cooc.neighbours(0, 5, now=2.0)]
[1, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
        self.pairs: dict[int, dict[int, float]] = {}
        self.totals = DecayingVector(half_life)
        self.origin: float | None = None

    def _factor(self, at: float) -> float:
        if self.origin is None:
            self.origin = at
        exponent = (at - self.origin) / self.half_life
        if exponent > _MAX_EXPONENT:
            shrink = 2.0 ** (-exponent)
            for neighbours in self.pairs.values():
                for row in neighbours:
                    neighbours[row] *= shrink
            self.origin = at
            exponent = 0.0
        return float(2.0**exponent)

    def _bump(self, row: int, other: int, amount: float) -> None:
        neighbours = self.pairs.get(row)
        if neighbours is None:
            neighbours = self.pairs[row] = {}
        neighbours[other] = neighbours.get(other, 0.0) + amount
        # Prune in batches (amortised), keeping the strongest neighbours.
        if len(neighbours) > self.max_neighbours + self.max_neighbours // 2:
            keep = sorted(neighbours.items(), key=lambda pair: -pair[1])[: self.max_neighbours]
            self.pairs[row] = dict(keep)

    def learn(
        self, row: int, weight: float, *, at: float, previous: Sequence[tuple[int, float, float]]
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
            The user's earlier ``(row, weight, time)`` events, oldest first; only
            the last ``window`` positive ones are used.
        """
        if weight <= 0:
            return
        factor = self._factor(at)
        self.totals.add(row, weight, at=at)
        paired = 0
        later_time = at
        session_factor = 1.0
        for other, other_weight, other_time in reversed(previous):
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

    def strength(self, row: int, other: int, *, now: float) -> float:
        """Damped co-occurrence score of ``other`` as a neighbour of ``row``."""
        neighbours = self.pairs.get(row)
        if not neighbours or other not in neighbours:
            return 0.0
        return self._score(neighbours[other], other, now)

    def _score(self, raw: float, other: int, now: float) -> float:
        if self.origin is None:
            return 0.0
        value = raw * 2.0 ** (-(now - self.origin) / self.half_life)
        if self.damping:
            value /= max(self.totals.value(other, now=now), 1.0) ** self.damping
        return value

    def neighbours(self, row: int, k: int, *, now: float) -> list[tuple[int, float]]:
        """Up to ``k`` neighbours of ``row``, strongest first, as ``(row, score)``."""
        neighbours = self.pairs.get(row)
        if not neighbours:
            return []
        scored = [(other, self._score(raw, other, now)) for other, raw in neighbours.items()]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored[:k]

    def candidates(self, seeds: Iterable[tuple[int, float]], *, now: float) -> dict[int, float]:
        """Sum of neighbour scores over weighted seed items: ``{row: score}``."""
        scores: dict[int, float] = {}
        for seed, seed_weight in seeds:
            for other, score in self.neighbours(seed, self.max_neighbours, now=now):
                scores[other] = scores.get(other, 0.0) + seed_weight * score
        return scores
