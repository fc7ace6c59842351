"""Discover and New releases carried over between a user's lists (``carry_rows_seconds``)."""

from __future__ import annotations

from collections import Counter

import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.engine import DISCOVER, NEW_RELEASES, TRENDING
from stream.models import CatalogItem, EventType, Interaction, RecommendationList, Row
from stream.simulator import World, WorldConfig

SLOW = (DISCOVER, NEW_RELEASES)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=60, n_items=300, seed=3))


@pytest.fixture(scope="module")
def events(world: World) -> list[Interaction]:
    return list(world.events(4_000))


def trained(world: World, events: list[Interaction], **config: object) -> Engine:
    engine = Engine(EngineConfig(seed=0).replace(**config))
    for item in world.catalog:
        engine.upsert_item(item)
    for event in events:
        engine.learn(event)
    return engine


def row(rec: RecommendationList, row_id: str) -> Row:
    return next(r for r in rec.rows if r.row_id == row_id)


def counting_discover(engine: Engine) -> Counter[str]:
    """Count how often the engine makes a Discover row (spy on the instance)."""
    made: Counter[str] = Counter()
    make = engine._discover_row

    def spy(*args: object, **kwargs: object) -> Row:
        made["discover"] += 1
        return make(*args, **kwargs)  # type: ignore[arg-type]

    engine._discover_row = spy  # type: ignore[method-assign]
    return made


def busiest(events: list[Interaction]) -> str:
    return Counter(e.user_id for e in events).most_common(1)[0][0]


def unrelated_item(rec: RecommendationList, world: World, seen: set[str]) -> str:
    """An item in no row of ``rec`` and never played by the user."""
    shown = set(rec.item_ids())
    return next(i.item_id for i in world.catalog if i.item_id not in shown | seen)


def test_slow_rows_are_carried_while_they_still_qualify(
    world: World, events: list[Interaction]
) -> None:
    engine = trained(world, events)
    made = counting_discover(engine)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    first = engine.recommend(user, now=now)
    assert made["discover"] == 1
    seen = {e.item_id for e in events if e.user_id == user}
    other = unrelated_item(first, world, seen)
    engine.learn(Interaction("e-new", user, other, EventType.PLAY, now + 1.0, 180_000))
    second = engine.recommend(user, now=now + 2.0)
    assert made["discover"] == 1  # carried, not made again
    for row_id in SLOW:
        assert row(second, row_id) == row(first, row_id)
    ids = second.item_ids()
    assert len(ids) == len(set(ids))  # carried rows still respect "no item twice"
    assert second.last_event_id == "e-new"  # the list itself is new


def test_a_played_or_skipped_slow_item_remakes_the_row(
    world: World, events: list[Interaction]
) -> None:
    engine = trained(world, events)
    made = counting_discover(engine)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    first = engine.recommend(user, now=now)
    for n, kind in enumerate((EventType.PLAY, EventType.SKIP)):
        target = row(first, DISCOVER).items[0].item_id
        at = now + 10.0 * (n + 1)
        engine.learn(Interaction(f"e-{n}", user, target, kind, at, 2_000))
        second = engine.recommend(user, now=at + 1.0)
        assert made["discover"] == n + 2
        discover = row(second, DISCOVER)
        assert target not in {i.item_id for i in discover.items}
        assert len(discover.items) == len(row(first, DISCOVER).items)
        first = second


def test_slow_rows_are_made_again_after_the_window(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events, carry_rows_seconds=30.0)
    made = counting_discover(engine)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    engine.recommend(user, now=now)
    engine.recommend(user, now=now + 29.0)
    assert made["discover"] == 1
    engine.recommend(user, now=now + 31.0)
    assert made["discover"] == 2
    engine.recommend(user, now=now - 5.0)  # a clock going backwards never reuses
    assert made["discover"] == 3


def test_zero_seconds_makes_every_row_for_every_list(
    world: World, events: list[Interaction]
) -> None:
    engine = trained(world, events, carry_rows_seconds=0.0)
    made = counting_discover(engine)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    for n in range(3):
        engine.recommend(user, now=now + n)
    assert made["discover"] == 3 and not engine._carried


def test_catalog_changes_and_forgetting_drop_carried_rows(
    world: World, events: list[Interaction]
) -> None:
    engine = trained(world, events)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    engine.recommend(user, now=now)
    assert user in engine._carried
    artist = engine.top_artists(user, 1, now=now)[0][0]
    engine.upsert_item(CatalogItem("fresh", "Fresh", artist, ("rock",), 200_000, now - 3_600))
    assert not engine._carried  # a new item may belong in anyone's slow rows
    rec = engine.recommend(user, now=now + 1.0)
    assert "fresh" in {i.item_id for r in rec.rows if r.row_id in SLOW for i in r.items}
    engine.forget_user(user)
    assert user not in engine._carried


def test_withdrawn_carried_item_is_never_shown(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    first = engine.recommend(user, now=now)
    withdrawn = row(first, DISCOVER).items[-1].item_id
    engine.remove_item(withdrawn)
    second = engine.recommend(user, now=now + 1.0)
    assert withdrawn not in second.item_ids()
    assert len(row(second, DISCOVER).items) == len(row(first, DISCOVER).items)  # remade


def test_carried_rows_are_bounded_and_not_part_of_snapshots(
    world: World, events: list[Interaction]
) -> None:
    engine = trained(world, events, carry_rows_users=3)
    now = events[-1].timestamp + 1.0
    users = list(dict.fromkeys(e.user_id for e in events))[:5]
    for user in users:
        engine.recommend(user, now=now)
    assert list(engine._carried) == users[-3:]  # least recently listed dropped first
    restored = Engine.restore(engine.snapshot())
    assert not restored._carried
    rec = restored.recommend(users[-1], now=now + 1.0)
    assert row(rec, TRENDING).items
