"""Item-to-item co-occurrence with decay."""

from __future__ import annotations

import pytest

from stream.engine.cooccurrence import Cooccurrence
from stream.engine.state import UserState

HOUR = 3_600.0


def model(**changes: float) -> Cooccurrence:
    params = dict(half_life=30 * 86_400.0, window=3, session_gap=2 * HOUR, max_neighbours=4)
    params.update(changes)
    params.setdefault("damping", 0.0)
    return Cooccurrence(**params)  # type: ignore[arg-type]


def listen(cooc: Cooccurrence, user: UserState, rows: list[int], start: float) -> None:
    for n, row in enumerate(rows):
        cooc.learn(row, 1.0, at=start + n * 60.0, previous=user.newest_first())
        user.remember(row, 1.0, start + n * 60.0)


def test_neighbours_of_x_are_the_items_played_with_x() -> None:
    cooc = model()
    for user_number in range(5):
        listen(cooc, UserState(16), [0, 1, 2], start=user_number * 10 * HOUR)
    listen(cooc, UserState(16), [7, 8], start=100 * HOUR)
    assert {row for row, _ in cooc.neighbours(0, 10, now=101 * HOUR)} == {1, 2}
    assert {row for row, _ in cooc.neighbours(7, 10, now=101 * HOUR)} == {8}
    assert cooc.neighbours(99, 10, now=0.0) == []


def test_nearer_predecessors_count_more() -> None:
    cooc = model()
    listen(cooc, UserState(16), [0, 1, 2], start=0.0)
    strengths = dict(cooc.neighbours(2, 10, now=200.0))
    assert strengths[1] > strengths[0] > 0


def test_pairs_across_a_session_gap_count_half() -> None:
    cooc = model()
    user = UserState(16)
    cooc.learn(0, 1.0, at=0.0, previous=user.newest_first())
    user.remember(0, 1.0, 0.0)
    cooc.learn(1, 1.0, at=60.0, previous=user.newest_first())
    user.remember(1, 1.0, 60.0)
    same_session = cooc.strength(0, 1, now=60.0)
    other = model()
    user = UserState(16)
    other.learn(0, 1.0, at=0.0, previous=user.newest_first())
    user.remember(0, 1.0, 0.0)
    other.learn(1, 1.0, at=3 * HOUR, previous=user.newest_first())
    assert other.strength(0, 1, now=3 * HOUR) == pytest.approx(same_session / 2)


def test_strength_decays_with_half_life() -> None:
    cooc = model(half_life=HOUR)
    listen(cooc, UserState(16), [0, 1], start=0.0)
    fresh = cooc.strength(0, 1, now=60.0)
    assert cooc.strength(0, 1, now=60.0 + HOUR) == pytest.approx(fresh / 2)


def test_skips_and_negative_predecessors_do_not_pair() -> None:
    cooc = model()
    user = UserState(16)
    user.remember(5, -1.0, 0.0)  # a skip just before
    cooc.learn(6, 1.0, at=10.0, previous=user.newest_first())
    cooc.learn(7, -1.0, at=20.0, previous=[(6, 1.0, 10.0)])
    assert cooc.neighbours(6, 10, now=20.0) == []
    assert cooc.neighbours(5, 10, now=20.0) == []


def test_neighbours_per_item_are_bounded() -> None:
    cooc = model(max_neighbours=4, window=1)
    for other in range(1, 60):
        cooc.learn(other, 1.0, at=float(other), previous=[(0, 1.0, float(other))])
    assert len(cooc.neighbours_of(0)[0]) <= 4 + 4 // 2
    assert len(cooc.neighbours(0, 100, now=60.0)) <= 6


def test_damping_lowers_very_popular_neighbours() -> None:
    plain = model()
    damped = model(damping=1.0)
    for cooc in (plain, damped):
        cooc.learn(1, 1.0, at=0.0, previous=[(0, 1.0, 0.0)])
        cooc.learn(2, 1.0, at=0.0, previous=[(0, 1.0, 0.0)])
        for _ in range(20):  # 2 is played a lot on its own
            cooc.learn(2, 1.0, at=1.0, previous=[])
    assert plain.strength(0, 1, now=1.0) == pytest.approx(plain.strength(0, 2, now=1.0))
    assert damped.strength(0, 1, now=1.0) > damped.strength(0, 2, now=1.0)


def test_candidates_sum_seed_neighbours() -> None:
    cooc = model()
    cooc.learn(1, 1.0, at=0.0, previous=[(0, 1.0, 0.0)])
    cooc.learn(1, 1.0, at=0.0, previous=[(5, 1.0, 0.0)])
    rows, scores = cooc.candidates([(0, 1.0), (5, 2.0)], now=0.0)
    by_row = dict(zip(rows.tolist(), scores.tolist(), strict=True))
    assert by_row[1] == pytest.approx(
        cooc.strength(0, 1, now=0.0) + 2 * cooc.strength(5, 1, now=0.0)
    )
