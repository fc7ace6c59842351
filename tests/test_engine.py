"""The Engine end to end: rows, reasons, exclusions, cold start, state."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.engine import BECAUSE_PREFIX, DISCOVER, NEW_RELEASES, TOP_PICKS, TRENDING
from stream.models import CatalogItem, EventType, Interaction, RecommendationList, Row, Source
from stream.simulator import World, WorldConfig

DAY = 86_400.0
ROW_IDS = {TOP_PICKS, DISCOVER, NEW_RELEASES, TRENDING}


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


@pytest.fixture(scope="module")
def engine(world: World, events: list[Interaction]) -> Engine:
    return trained(world, events)


def busiest(events: list[Interaction]) -> str:
    return Counter(e.user_id for e in events).most_common(1)[0][0]


def ids_of(rec: RecommendationList) -> list[str]:
    return rec.item_ids()


def test_rows_reasons_and_list_metadata(engine: Engine, events: list[Interaction]) -> None:
    user = busiest(events)
    now = events[-1].timestamp + 60.0
    rec = engine.recommend(user, now=now, device="mobile")
    row_ids = [row.row_id for row in rec.rows]
    assert row_ids[0] == TOP_PICKS
    assert any(r.startswith(BECAUSE_PREFIX) for r in row_ids)
    assert all(r in ROW_IDS or r.startswith(BECAUSE_PREFIX) for r in row_ids)
    assert len([r for r in row_ids if r.startswith(BECAUSE_PREFIX)]) <= 2
    for row in rec.rows:
        assert 0 < len(row.items) <= 10
        assert row.title
        for item in row.items:
            assert item.reason and item.item_id in engine.items
    counts = engine.user_counts(user)
    assert counts is not None and rec.based_on_events == sum(counts.values())
    last = [e for e in events if e.user_id == user][-1]
    assert (rec.last_event_id, rec.last_event_at) == (last.event_id, last.timestamp)
    assert rec.generated_at == now
    again = engine.recommend(user, now=now)
    assert again.list_id != rec.list_id


def test_reasons_name_catalog_titles_and_artists(engine: Engine, events: list[Interaction]) -> None:
    rec = engine.recommend(busiest(events), now=events[-1].timestamp + 60.0)
    titles = {item.title for item in engine.items.catalog if item is not None}
    artists = {item.artist for item in engine.items.catalog if item is not None}
    for row in rec.rows:
        if row.row_id.startswith(BECAUSE_PREFIX):
            seed = row.row_id[len(BECAUSE_PREFIX) :]
            label = engine.items.label(engine.items.rows[seed])
            assert row.title == f"Because you played {label}" and label in titles
            assert {item.reason for item in row.items} == {f"Often played with {label}"}
        if row.row_id == TRENDING:
            assert all(item.reason.startswith("Trending: ") for item in row.items)
    reasons = [item.reason for row in rec.rows for item in row.items]
    named = [r for r in reasons if r.startswith(("Because you listen to ", "New from "))]
    for reason in named:
        assert reason.split(" to ", 1)[-1].split(" from ", 1)[-1] in artists


def test_no_repeats_across_rows_and_per_artist_cap(world: World, events: list[Interaction]) -> None:
    for cap in (1, 2):
        engine = trained(world, events[:2_000], max_per_artist=cap)
        for user in list(dict.fromkeys(e.user_id for e in events[:2_000]))[:15]:
            rec = engine.recommend(user, now=events[1_999].timestamp + 1.0)
            ids = ids_of(rec)
            assert len(ids) == len(set(ids))
            for row in rec.rows:
                artists = Counter(
                    engine.items.catalog[engine.items.rows[i.item_id]].artist for i in row.items
                )
                assert max(artists.values()) <= cap


def test_seen_items_are_never_in_personal_rows(engine: Engine, events: list[Interaction]) -> None:
    user = busiest(events)
    seen = {e.item_id for e in events if e.user_id == user}
    rec = engine.recommend(user, now=events[-1].timestamp + 1.0)
    for row in rec.rows:
        if row.row_id != TRENDING:
            assert not seen & {item.item_id for item in row.items}
    ranked = engine.rank(user, 50, now=events[-1].timestamp + 1.0)
    assert len(ranked) == 50 and not seen & set(ranked) and len(set(ranked)) == 50


def test_recently_skipped_items_never_appear(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events)
    now = events[-1].timestamp + 10.0
    chart = [i.item_id for r in engine.recommend("newcomer", now=now).rows for i in r.items]
    target = chart[0]
    engine.learn(Interaction("skip-1", "newcomer", target, EventType.SKIP, now, 3_000))
    rec = engine.recommend("newcomer", now=now + 60.0)
    assert target not in ids_of(rec)


def test_removed_items_are_never_recommended(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events)
    now = events[-1].timestamp + 1.0
    users = list(dict.fromkeys(e.user_id for e in events))[:10]
    withdrawn: set[str] = set()
    for user in users:
        withdrawn.update(ids_of(engine.recommend(user, now=now))[:5])
        withdrawn.update(engine.rank(user, 5, now=now))
    for item_id in withdrawn:
        engine.remove_item(item_id)
    engine.learn(Interaction("late", users[0], next(iter(withdrawn)), EventType.PLAY, now))
    for user in [*users, "stranger"]:
        assert not withdrawn & set(ids_of(engine.recommend(user, now=now + 1.0)))
        assert not withdrawn & set(engine.rank(user, 100, now=now + 1.0))


def test_cold_start_user_gets_popular_and_trending(
    engine: Engine, events: list[Interaction]
) -> None:
    now = events[-1].timestamp + 60.0
    rec = engine.recommend("brand-new-user", now=now, device="tv")
    assert engine.known_user("brand-new-user") is False
    row_ids = [row.row_id for row in rec.rows]
    assert row_ids[0] == TOP_PICKS and TRENDING in row_ids
    assert rec.rows[0].items[0].reason.startswith("Popular")
    assert (rec.based_on_events, rec.last_event_id, rec.last_event_at) == (0, None, None)
    ranked = engine.rank("brand-new-user", 10, now=now)
    assert len(ranked) == 10
    assert engine.user_counts("brand-new-user") is None


def test_brand_new_item_can_appear_before_any_play(
    engine: Engine, events: list[Interaction]
) -> None:
    user = busiest(events)
    now = events[-1].timestamp + 60.0
    artist = engine.top_artists(user, 1, now=now)[0][0]
    genres = (engine.top_genres(user, 1, now=now)[0][0],)
    fresh = CatalogItem("brand-new", "First Light", artist, genres, 200_000, now - DAY)
    engine.upsert_item(fresh)
    rec = engine.recommend(user, now=now)
    placed = {row.row_id: row for row in rec.rows if "brand-new" in [i.item_id for i in row.items]}
    assert set(placed) & {NEW_RELEASES, DISCOVER}
    for row in placed.values():
        reason = next(i.reason for i in row.items if i.item_id == "brand-new")
        if row.row_id == NEW_RELEASES:
            assert reason == f"New from {artist}"
    engine.remove_item("brand-new")


def test_works_without_a_catalog(events: list[Interaction]) -> None:
    engine = Engine(EngineConfig(seed=0))
    for event in events:
        engine.learn(event)
    user = busiest(events)
    rec = engine.recommend(user, now=events[-1].timestamp + 1.0)
    row_ids = [row.row_id for row in rec.rows]
    assert TOP_PICKS in row_ids and NEW_RELEASES not in row_ids
    because = [row for row in rec.rows if row.row_id.startswith(BECAUSE_PREFIX)]
    assert because and because[0].title == f"Because you played {because[0].row_id.split(':')[1]}"
    assert len(engine.rank(user, 10, now=events[-1].timestamp + 1.0)) == 10


def test_user_counts_match_ground_truth(engine: Engine, events: list[Interaction]) -> None:
    truth: dict[str, Counter[str]] = {}
    for event in events:
        truth.setdefault(event.user_id, Counter())[event.type.value] += 1
    for user, counts in truth.items():
        assert engine.user_counts(user) == {k: counts.get(k, 0) for k in ("play", "skip", "replay")}


def test_forget_user_removes_their_state(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events[:1_500])
    user = busiest(events[:1_500])
    assert engine.forget_user(user)
    assert not engine.known_user(user) and engine.user_counts(user) is None
    assert user not in engine.factors.river.u_latents
    assert not engine.forget_user(user)
    assert len(engine.rank(user, 5, now=events[1_499].timestamp)) == 5


def test_seeded_runs_and_snapshots_are_identical(world: World, events: list[Interaction]) -> None:
    first = trained(world, events[:2_000])
    second = trained(world, events[:2_000])
    assert first.snapshot() == second.snapshot()  # same events, same seed: same bytes
    restored = Engine.restore(first.snapshot())
    # Bytes of a restored engine may differ (numpy re-creates dtype objects, so pickle's
    # memo differs); what must round-trip is the state, i.e. every answer and every update.
    for event in events[2_000:2_500]:
        assert restored.predict_skip(event) == first.predict_skip(event)
        first.learn(event)
        restored.learn(event)
    now = events[2_499].timestamp + 1.0
    for user in [*list(dict.fromkeys(e.user_id for e in events[:2_000]))[:5], "nobody"]:
        assert restored.rank(user, 10, now=now) == first.rank(user, 10, now=now)
        assert restored.recommend(user, now=now) == first.recommend(user, now=now)
        assert restored.user_counts(user) == first.user_counts(user)
    again = Engine.restore(restored.snapshot())
    assert again.snapshot() == Engine.restore(again.snapshot()).snapshot()


def test_snapshot_version_is_checked() -> None:
    import pickle

    with pytest.raises(ValueError, match="snapshot version"):
        Engine.restore(pickle.dumps((0, Engine())))


def test_rank_and_predict_skip_change_no_state(engine: Engine, events: list[Interaction]) -> None:
    before = engine.snapshot()
    now = events[-1].timestamp + 5.0
    for event in events[-50:]:
        engine.rank(event.user_id, 10, now=now)
        p = engine.predict_skip(event)
        assert 0.0 <= p <= 1.0
    engine.rank("nobody", 10, now=now)
    assert engine.snapshot() == before


def test_discover_feedback_rewards_the_arm(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events[:2_000])
    user = busiest(events[:2_000])
    now = events[1_999].timestamp + 1.0
    rec = engine.recommend(user, now=now)
    discover = next(row for row in rec.rows if row.row_id == DISCOVER)
    trials_before = sum(engine.explorer.trials.values())
    for position, item in enumerate(discover.items[:3]):
        engine.learn(
            Interaction(
                f"d{position}",
                user,
                item.item_id,
                EventType.PLAY,
                now + position,
                ms_played=200_000,
                duration_ms=200_000,
                source=Source(rec.list_id, DISCOVER, position),
            )
        )
    assert sum(engine.explorer.trials.values()) == trials_before + min(3, len(discover.items))


def test_learning_uses_event_time_only(world: World, events: list[Interaction]) -> None:
    engine = trained(world, events[:1_000])
    user = busiest(events[:1_000])
    at = events[999].timestamp
    first = engine.recommend(user, now=at + DAY)
    engine2 = trained(world, events[:1_000])
    assert engine2.recommend(user, now=at + DAY).rows == first.rows


# ---------------------------------------------------------------------------------------
# Discover and New releases carried over between a user's lists (``carry_rows_seconds``)

SLOW = (DISCOVER, NEW_RELEASES)


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


class ListedOnce(NamedTuple):
    engine: Engine
    made: Counter[str]  # Discover rows made (see counting_discover)
    user: str
    now: float
    first: RecommendationList


def listed_once(world: World, events: list[Interaction], **config: object) -> ListedOnce:
    """A trained engine whose Discover rows are counted, and the busiest user's first list."""
    engine = trained(world, events, **config)
    made = counting_discover(engine)
    user = busiest(events)
    now = events[-1].timestamp + 1.0
    return ListedOnce(engine, made, user, now, engine.recommend(user, now=now))


def unrelated_item(rec: RecommendationList, world: World, seen: set[str]) -> str:
    """An item in no row of ``rec`` and never played by the user."""
    shown = set(rec.item_ids())
    return next(i.item_id for i in world.catalog if i.item_id not in shown | seen)


def test_slow_rows_are_carried_while_they_still_qualify(
    world: World, events: list[Interaction]
) -> None:
    engine, made, user, now, first = listed_once(world, events)
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
    engine, made, user, now, first = listed_once(world, events)
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
    engine, made, user, now, _ = listed_once(world, events, carry_rows_seconds=30.0)
    engine.recommend(user, now=now + 29.0)
    assert made["discover"] == 1
    engine.recommend(user, now=now + 31.0)
    assert made["discover"] == 2
    engine.recommend(user, now=now - 5.0)  # a clock going backwards never reuses
    assert made["discover"] == 3


def test_zero_seconds_makes_every_row_for_every_list(
    world: World, events: list[Interaction]
) -> None:
    engine, made, user, now, _ = listed_once(world, events, carry_rows_seconds=0.0)
    for n in range(1, 3):
        engine.recommend(user, now=now + n)
    assert made["discover"] == 3 and not engine._carried


def test_catalog_changes_and_forgetting_drop_carried_rows(
    world: World, events: list[Interaction]
) -> None:
    engine, _, user, now, _ = listed_once(world, events)
    assert user in engine._carried
    artist = engine.top_artists(user, 1, now=now)[0][0]
    engine.upsert_item(CatalogItem("fresh", "Fresh", artist, ("rock",), 200_000, now - 3_600))
    assert not engine._carried  # a new item may belong in anyone's slow rows
    rec = engine.recommend(user, now=now + 1.0)
    assert "fresh" in {i.item_id for r in rec.rows if r.row_id in SLOW for i in r.items}
    engine.forget_user(user)
    assert user not in engine._carried


def test_withdrawn_carried_item_is_never_shown(world: World, events: list[Interaction]) -> None:
    engine, _, _, now, first = listed_once(world, events)
    user = first.user_id
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
