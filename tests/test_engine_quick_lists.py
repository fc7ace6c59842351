"""Quick lists: the user's last list patched for their new events (Engine.quick_recommend)."""

from __future__ import annotations

from collections import Counter

import pytest

from stream.engine import Engine
from stream.engine.engine import BECAUSE_PREFIX, DISCOVER, TOP_PICKS, TRENDING
from stream.models import EventType, Interaction, RecommendationList, Row
from stream.simulator import World, WorldConfig
from tests.test_engine import trained


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=80, n_items=400, seed=5))


@pytest.fixture(scope="module")
def events(world: World) -> list[Interaction]:
    return list(world.events(5_000))


def listed(
    world: World, events: list[Interaction], **config: object
) -> tuple[Engine, str, float, RecommendationList]:
    """A trained engine, its busiest user, a time after the events, and that user's full list."""
    engine = trained(world, events, **config)
    user = Counter(e.user_id for e in events).most_common(1)[0][0]
    now = events[-1].timestamp + 60.0
    return engine, user, now, engine.recommend(user, now=now)


def row(rec: RecommendationList, row_id: str) -> Row:
    return next(r for r in rec.rows if r.row_id == row_id)


def play(engine: Engine, user: str, item_id: str, at: float, n: int = 0) -> None:
    engine.learn(Interaction(f"quick-{n}", user, item_id, EventType.PLAY, at, 240_000, 1.0))


def assert_rules_hold(engine: Engine, rec: RecommendationList, user: str) -> None:
    ids = rec.item_ids()
    assert len(ids) == len(set(ids)), "an item in two rows"
    seen = {engine.items.ids[r] for r in engine.users[user].seen}
    assert not seen & set(ids), "a played item still recommended"
    for made in rec.rows:
        artists = Counter(engine.items.artist_of[engine.items.rows[i.item_id]] for i in made.items)
        assert max(artists.values()) <= engine.config.max_per_artist


def test_without_new_events_the_quick_list_is_the_last_one(
    world: World, events: list[Interaction]
) -> None:
    engine, user, now, full = listed(world, events)
    quick = engine.quick_recommend(user, now=now + 1.0)
    assert quick is not None
    assert [r.row_id for r in quick.rows] == [r.row_id for r in full.rows]
    assert all(a is b for a, b in zip(quick.rows, full.rows, strict=True))  # carried whole
    assert quick.list_id != full.list_id and quick.generated_at == now + 1.0


def test_a_played_top_pick_is_replaced_from_the_reserve(
    world: World, events: list[Interaction]
) -> None:
    engine, user, now, full = listed(world, events)
    top = row(full, TOP_PICKS)
    played = top.items[0].item_id
    play(engine, user, played, now + 1.0)
    quick = engine.quick_recommend(user, now=now + 2.0)
    assert quick is not None
    new_top = row(quick, TOP_PICKS)
    assert played not in {i.item_id for i in new_top.items}
    assert len(new_top.items) == len(top.items)  # refilled, not shortened
    # the others keep their order; the newcomer ranked just below the old row
    assert [i.item_id for i in new_top.items[:-1]] == [i.item_id for i in top.items[1:]]
    assert new_top.items[-1].score <= top.items[-1].score
    assert quick.last_event_id == "quick-0" and quick.based_on_events == full.based_on_events + 1
    assert_rules_hold(engine, quick, user)


def test_a_strong_play_gets_its_because_row_first(world: World, events: list[Interaction]) -> None:
    engine, user, now, full = listed(world, events)
    played = row(full, DISCOVER).items[0].item_id
    play(engine, user, played, now + 1.0)
    quick = engine.quick_recommend(user, now=now + 2.0)
    assert quick is not None
    because = [r for r in quick.rows if r.row_id.startswith(BECAUSE_PREFIX)]
    assert because[0].row_id == BECAUSE_PREFIX + played
    assert quick.rows[1] is because[0]  # right after Top picks
    assert len(because) <= engine.config.because_rows
    # the same neighbours a full list would show, less what rows above took
    neighbours = [item for item, _ in engine.similar_items(played, 50, now=now + 2.0)]
    shown = [i.item_id for i in because[0].items]
    assert shown and all(item in neighbours for item in shown)
    assert played not in {i.item_id for i in row(quick, DISCOVER).items}  # Discover lost it
    assert_rules_hold(engine, quick, user)


def test_skipped_items_leave_every_row(world: World, events: list[Interaction]) -> None:
    engine, user, now, full = listed(world, events)
    trending = row(full, TRENDING).items[0].item_id
    engine.learn(Interaction("skip-1", user, trending, EventType.SKIP, now + 1.0, 5_000, 0.02))
    quick = engine.quick_recommend(user, now=now + 2.0)
    assert quick is not None and trending not in quick.item_ids()
    assert len(row(quick, TRENDING).items) == len(row(full, TRENDING).items)
    assert not any(r.row_id == BECAUSE_PREFIX + trending for r in quick.rows)  # not a play
    assert_rules_hold(engine, quick, user)


def test_a_withdrawn_item_leaves_a_carried_row(world: World, events: list[Interaction]) -> None:
    engine, user, now, full = listed(world, events)
    withdrawn = row(full, TRENDING).items[1].item_id
    engine.remove_item(withdrawn)
    quick = engine.quick_recommend(user, now=now + 1.0)
    assert quick is not None and withdrawn not in quick.item_ids()


def test_quick_lists_follow_each_other(world: World, events: list[Interaction]) -> None:
    engine, user, now, full = listed(world, events)
    previous = full
    for n in range(6):  # each quick list is the basis of the next one
        target = row(previous, TOP_PICKS).items[0].item_id
        play(engine, user, target, now + n + 1.0, n)
        quick = engine.quick_recommend(user, now=now + n + 1.5)
        assert quick is not None and target not in quick.item_ids()
        assert_rules_hold(engine, quick, user)
        previous = quick


def test_no_quick_list_without_a_recent_full_one(world: World, events: list[Interaction]) -> None:
    engine, user, now, _ = listed(world, events, quick_list_seconds=30.0)
    assert engine.quick_recommend(user, now=now + 29.0) is not None
    assert engine.quick_recommend(user, now=now + 31.0) is None  # ranked too long ago
    assert engine.quick_recommend(user, now=now - 1.0) is None  # clock went backwards
    other = next(u for u in engine.users if u != user)
    assert engine.quick_recommend(other, now=now) is None  # never listed
    assert engine.quick_recommend("nobody", now=now) is None
    engine.forget_user(user)
    assert engine.quick_recommend(user, now=now + 1.0) is None
    off, user, now, _ = listed(world, events, quick_list_seconds=0.0)
    assert off.quick_recommend(user, now=now + 1.0) is None


def test_bases_are_a_bounded_cache_not_state(world: World, events: list[Interaction]) -> None:
    engine, user, now, _ = listed(world, events, quick_list_users=3)
    for other in list(engine.users)[:5]:
        engine.recommend(other, now=now)
    assert len(engine._bases) == 3
    restored = Engine.restore(engine.snapshot())
    assert restored.quick_recommend(user, now=now + 1.0) is None
