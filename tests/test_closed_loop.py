"""Closed-loop picks: true taste and position bias; tallies per arm."""

from __future__ import annotations

from collections import Counter

import numpy as np

from stream.closed_loop import ArmTally, pick_from_list
from stream.models import EventType, Interaction, RecommendationList, RecommendedItem, Row, Source
from stream.simulator import World, WorldConfig

WORLD = World.generate(WorldConfig(n_users=5, n_items=60, seed=3))
USER = "u-00002"


def _list(items: list[str]) -> RecommendationList:
    row = Row("top-picks", "Top", tuple(RecommendedItem(i, 1.0, "r") for i in items))
    return RecommendationList(USER, "L1", 0.0, (row,))


def _picks(rec: RecommendationList, **kwargs) -> Counter[str]:
    rng = np.random.default_rng(0)
    return Counter(pick_from_list(WORLD, rec, rng, **kwargs)[0] for _ in range(3000))


def test_without_position_bias_the_best_liked_item_is_picked_most():
    items = WORLD.item_ids[:8]
    best = max(items, key=lambda item: WORLD.affinity(USER, item))
    counts = _picks(_list(items), position_decay=1.0, row_decay=1.0, taste_sharpness=8.0)
    assert counts.most_common(1)[0][0] == best


def test_without_taste_the_first_slot_is_picked_most():
    items = WORLD.item_ids[:8]
    counts = _picks(_list(items), taste_sharpness=0.0, position_decay=0.6)
    assert counts.most_common(1)[0][0] == items[0]
    assert counts[items[0]] > 2 * counts[items[3]]


def test_unknown_items_are_never_picked_and_an_empty_list_gives_none():
    rng = np.random.default_rng(0)
    assert pick_from_list(WORLD, _list(["nope"]), rng) is None
    item, source = pick_from_list(WORLD, _list(["nope", WORLD.item_ids[0]]), rng)
    assert (item, source) == (WORLD.item_ids[0], Source("L1", "top-picks", 1))


def _response(kind: EventType, ms: int) -> Interaction:
    return Interaction("e", USER, "t", kind, 0.0, ms_played=ms, duration_ms=100)


def test_tally_rates_and_lift():
    tally = ArmTally()
    for _ in range(3):
        tally.add("personalised", _response(EventType.PLAY, 100))
    tally.add("personalised", _response(EventType.SKIP, 5))
    tally.add("holdout", _response(EventType.PLAY, 100))
    tally.add("holdout", _response(EventType.PLAY, 50))  # not played through
    arms = tally.as_dict()
    assert arms["personalised"]["play_through_rate"] == 0.75
    assert arms["holdout"] == {
        "users": 1,
        "picks": 2,
        "plays": 2,
        "skips": 0,
        "play_through_rate": 0.5,
        "skip_rate": 0.0,
    }
    assert tally.lift() == 0.5
    assert ArmTally().lift() is None
