"""The synthetic world: shape of the catalog and users, and realism of the event stream."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from stream.contracts import (
    CATALOG_ITEM_SCHEMA,
    INTERACTION_SCHEMA,
    catalog_item_to_wire,
    interaction_to_wire,
    validate_document,
)
from stream.models import EventType, Interaction, Source
from stream.simulator import DAY, GENRE_NAMES, World, WorldConfig

SMALL = WorldConfig(n_users=300, n_items=1000, seed=11)
N_EVENTS = 30_000


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(SMALL)


@pytest.fixture(scope="module")
def events(world: World) -> list[Interaction]:
    return list(world.events(N_EVENTS))


# --------------------------------------------------------------------------- config


def test_config_is_frozen_and_checked() -> None:
    config = WorldConfig()
    with pytest.raises(FrozenInstanceError):
        config.n_users = 3  # type: ignore[misc]
    assert config.artist_count == config.n_items // 8
    assert config.start == 1_767_225_600.0  # 2026-01-01T00:00Z
    with pytest.raises(ValueError, match="n_genres"):
        WorldConfig(n_genres=len(GENRE_NAMES) + 1)
    with pytest.raises(ValueError, match="at most 1"):
        WorldConfig(repeat_probability=0.7, explore_probability=0.4)


def test_genre_names_are_readable_and_the_first_twenty_span_families() -> None:
    first = GENRE_NAMES[:20]
    assert len(set(GENRE_NAMES)) == len(GENRE_NAMES)
    assert {"rock", "jazz", "ambient", "hip-hop"} <= set(first)


# --------------------------------------------------------------------------- catalog and users


def test_catalog_is_plausible(world: World) -> None:
    catalog = world.catalog
    ids = [item.item_id for item in catalog]
    assert ids == sorted(ids) == [f"t-{i:05d}" for i in range(SMALL.n_items)]
    assert all(
        validate_document(CATALOG_ITEM_SCHEMA, catalog_item_to_wire(i)) is None for i in catalog
    )
    assert all(1 <= len(item.genres) <= 3 for item in catalog)
    assert all(len(set(item.genres)) == len(item.genres) for item in catalog)
    assert all(120_000 <= item.duration_ms <= 420_000 for item in catalog)
    assert 180_000 < np.mean([item.duration_ms for item in catalog]) < 260_000
    assert all(item.title and item.artist for item in catalog)
    artists = {item.artist for item in catalog}
    assert len(artists) == SMALL.artist_count
    # Every artist has a main genre that all of their tracks carry first.
    main_genres = defaultdict(set)
    for item in catalog:
        main_genres[item.artist].add(item.genres[0])
    assert all(len(genres) == 1 for genres in main_genres.values())


def test_release_dates_are_midnights_and_some_fall_in_the_simulated_period(world: World) -> None:
    start = SMALL.start
    released = np.array([item.released_at for item in world.catalog])
    assert np.all(released % DAY == 0)  # dates survive the wire format's date field
    new = released >= start
    assert 0.04 < new.mean() < 0.14  # default new_release_fraction is 0.08
    assert released[new].max() < start + SMALL.release_window_days * DAY
    assert released[~new].min() > start - (SMALL.catalog_years + 1) * 365.25 * DAY


def test_users_have_tastes_devices_and_countries(world: World) -> None:
    users = world.users
    assert [u.user_id for u in users] == [f"u-{i:05d}" for i in range(SMALL.n_users)]
    assert all(1 <= len(u.genres) <= 4 for u in users)
    assert {u.device for u in users} <= set(SMALL.devices)
    assert {u.country for u in users} <= set(SMALL.countries)
    activity = np.array([u.activity for u in users])
    assert activity.max() > 5 * np.median(activity)  # heavy tail


def test_same_seed_same_world_other_seed_other_world() -> None:
    config = WorldConfig(n_users=30, n_items=120, seed=5)
    first, second = World.generate(config), World.generate(config)
    assert first.catalog == second.catalog and first.users == second.users
    assert list(first.events(500)) == list(second.events(500))
    other = World.generate(WorldConfig(n_users=30, n_items=120, seed=6))
    assert other.catalog != first.catalog


def test_affinity_matches_the_vectorised_form_and_unknown_ids_raise(world: World) -> None:
    scores = world.affinities("u-00007")
    for item_id in ("t-00000", "t-00123", "t-00999"):
        index = int(item_id[2:])
        assert scores[index] == pytest.approx(world.affinity("u-00007", item_id))
    assert ((scores > 0) & (scores < 1)).all()
    with pytest.raises(KeyError, match="u-99999"):
        world.affinity("u-99999", "t-00000")
    with pytest.raises(KeyError, match="nope"):
        world.affinity("u-00000", "nope")


def test_users_prefer_tracks_of_their_genres(world: World) -> None:
    gaps = []
    for user in world.users[:50]:
        scores = world.affinities(user.user_id)
        in_taste = np.array([user.genres[0] in item.genres for item in world.catalog])
        if in_taste.any() and (~in_taste).any():
            gaps.append(scores[in_taste].mean() - scores[~in_taste].mean())
    assert np.mean(gaps) > 0.2


def test_popularity_is_zero_before_release_and_new_releases_trend(world: World) -> None:
    start = SMALL.start
    released = np.array([item.released_at for item in world.catalog])
    at_start = world.popularity(start)
    assert at_start.sum() == pytest.approx(1.0)
    assert np.all(at_start[released > start] == 0)
    # Right after release a new track is far more popular than a month later, relative
    # to the back catalog: the release boost and the bursts decay.
    fresh = (released > start + 5 * DAY) & (released < start + 20 * DAY)
    back = released < start
    ratios = []
    for index in np.flatnonzero(fresh)[:30]:
        soon = world.popularity(released[index] + 0.5 * DAY)
        later = world.popularity(released[index] + 30 * DAY)
        ratios.append((soon[index] / soon[back].sum()) / (later[index] / later[back].sum()))
    assert min(ratios) > 1.5
    assert max(ratios) > 5  # some releases burst


@pytest.mark.parametrize("seed", [0, 1])
def test_trending_hits_burst_after_release(seed: int) -> None:
    config = WorldConfig(n_users=300, n_items=1000, new_release_fraction=0.3, seed=seed)
    world = World.generate(config)
    released = {item.item_id: item.released_at for item in world.catalog}
    hits = {h for h in world.trending_hits if released[h] <= config.start + 4 * DAY}
    assert hits and set(world.trending_hits) <= {
        i for i, t in released.items() if t >= config.start
    }
    first_days = later_days = 0
    for event in world.events(25_000):
        if event.item_id in hits:
            age = (event.timestamp - released[event.item_id]) / DAY
            first_days += age < 3
            later_days += 5 <= age < 8
    assert first_days > 2 * later_days


# --------------------------------------------------------------------------- the event stream


def test_events_are_valid_ordered_unique_and_complete(
    world: World, events: list[Interaction]
) -> None:
    assert len(events) == N_EVENTS
    times = [e.timestamp for e in events]
    assert times == sorted(times)
    assert times[0] >= SMALL.start
    assert len({e.event_id for e in events}) == N_EVENTS
    assert events[0].event_id == "sim11-000000000"
    durations = {item.item_id: item.duration_ms for item in world.catalog}
    released = {item.item_id: item.released_at for item in world.catalog}
    for event in events:
        assert event.duration_ms == durations[event.item_id]
        assert event.timestamp >= released[event.item_id]  # only played after release
        assert event.device in SMALL.devices and event.country in SMALL.countries
        assert 0 <= event.ms_played <= event.duration_ms
        assert event.timestamp * 1000 == round(event.timestamp * 1000)  # whole ms, wire-exact
    assert all(
        validate_document(INTERACTION_SCHEMA, interaction_to_wire(e)) is None for e in events
    )


def test_sessions_of_many_users_interleave(events: list[Interaction]) -> None:
    switches = sum(a.user_id != b.user_id for a, b in itertools.pairwise(events))
    assert switches > 0.3 * len(events)
    # Yet each user listens in sessions: a user's consecutive events are mostly minutes apart.
    last_time: dict[str, float] = {}
    gaps = []
    for event in events:
        if event.user_id in last_time:
            gaps.append(event.timestamp - last_time[event.user_id])
        last_time[event.user_id] = event.timestamp
    gaps = np.array(gaps)
    assert np.median(gaps) < 600
    # ... and sessions are hours apart: a session of a dozen tracks or so.
    tracks_per_session = len(gaps) / (gaps > 3600).sum()
    assert 5 < tracks_per_session < 30


def test_listening_follows_daily_rhythms(events: list[Interaction]) -> None:
    hours = Counter(int(e.timestamp // 3600) % 24 for e in events)
    busiest, quietest = max(hours.values()), min(hours.get(h, 0) for h in range(24))
    assert busiest > 1.5 * quietest


def test_popularity_is_skewed(events: list[Interaction]) -> None:
    plays = Counter(e.item_id for e in events if e.is_positive)
    counts = sorted(plays.values(), reverse=True)
    top_share = sum(counts[: SMALL.n_items // 100]) / sum(counts)
    assert top_share > 0.10  # the top 1% of items get over 10x their fair share
    assert len(plays) > 0.5 * SMALL.n_items  # and yet there is a long tail


def test_users_repeat_items(events: list[Interaction]) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    repeats = 0
    for event in events:
        repeats += event.item_id in seen[event.user_id]
        seen[event.user_id].add(event.item_id)
    assert 0.3 < repeats / len(events) < 0.85


def test_skip_rate_is_realistic_and_driven_by_affinity(
    world: World, events: list[Interaction]
) -> None:
    types = Counter(e.type for e in events)
    assert 0.18 < types[EventType.SKIP] / len(events) < 0.37
    assert 0.005 < types[EventType.REPLAY] / len(events) < 0.1
    affinity = np.array([world.affinity(e.user_id, e.item_id) for e in events])
    skipped = np.array([e.type is EventType.SKIP for e in events])
    low, high = affinity < 0.4, affinity > 0.8
    assert skipped[low].mean() > 2.5 * skipped[high].mean()
    # Poor matches are skipped earlier than good ones.
    completion = np.array([e.completion for e in events])
    assert completion[skipped & low].mean() < completion[skipped & high].mean()
    assert completion[~skipped].mean() > 0.9


def test_replays_follow_their_play_right_away(events: list[Interaction]) -> None:
    previous: dict[str, Interaction] = {}
    replays = 0
    for event in events:
        if event.type is EventType.REPLAY:
            before = previous[event.user_id]
            assert before.item_id == event.item_id and before.type is EventType.PLAY
            assert event.timestamp - before.timestamp < event.duration_ms / 1000 + 10
            replays += 1
        previous[event.user_id] = event
    assert replays > 0


def test_context_shifts_skip_rates(events: list[Interaction]) -> None:
    by_device: dict[str | None, list[bool]] = defaultdict(list)
    for event in events:
        by_device[event.device].append(event.type is EventType.SKIP)
    assert np.mean(by_device["mobile"]) > np.mean(by_device["speaker"]) + 0.03


def test_new_releases_get_played(world: World, events: list[Interaction]) -> None:
    released = np.array([item.released_at for item in world.catalog])
    release_of = dict(zip(world.item_ids, released, strict=True))
    fresh_plays = plays = 0
    fresh_catalog = []
    for event in events:
        if event.is_positive and event.timestamp > SMALL.start + 3 * DAY:
            plays += 1
            fresh_plays += release_of[event.item_id] > event.timestamp - 14 * DAY
    for day in np.arange(3, 11) * DAY + SMALL.start:
        out = released <= day
        fresh_catalog.append(((released > day - 14 * DAY) & out).sum() / out.sum())
    # Releases of the last two weeks are boosted and some burst: not ignored.
    assert fresh_plays / plays > 1.5 * np.mean(fresh_catalog)


def test_events_stream_lazily_and_continue_across_calls() -> None:
    world = World.generate(WorldConfig(n_users=200, n_items=500, seed=4))
    first = list(itertools.islice(world.events(10**12), 1000))
    buffered = len(world._ready) + len(world._pending)
    assert buffered < 5000  # an hour of events at most, never the whole request
    more = list(world.events(500))
    assert first[-1].timestamp <= more[0].timestamp
    assert more[0].event_id == "sim4-000001000"
    restarted = list(world.events(10, start=SMALL.start + 100 * DAY))
    assert restarted[0].timestamp >= SMALL.start + 100 * DAY


def test_oracle_far_outranks_popularity_on_new_positive_items(world: World) -> None:
    """Mirror of the prequential protocol: the world carries learnable per-user taste."""
    fresh = World.generate(SMALL)
    item_index = {item_id: i for i, item_id in enumerate(fresh.item_ids)}
    counts = np.zeros(SMALL.n_items)
    interacted: dict[str, set[int]] = defaultdict(set)
    oracle_hits = popularity_hits = eligible = 0
    for event in fresh.events(20_000):
        item, seen = item_index[event.item_id], interacted[event.user_id]
        if event.is_positive and seen and item not in seen:
            eligible += 1
            exclude = np.fromiter(seen, dtype=np.int64)
            oracle = fresh.oracle_scores(event.user_id, event.timestamp)
            oracle[exclude] = -1.0
            oracle_hits += item in np.argpartition(-oracle, 10)[:10]
            popular = counts.copy()
            popular[exclude] = -1.0
            popularity_hits += item in np.argpartition(-popular, 10)[:10]
        seen.add(item)
        counts[item] += event.is_positive
    oracle_recall, popularity_recall = oracle_hits / eligible, popularity_hits / eligible
    assert eligible > 2000
    assert oracle_recall > 3 * popularity_recall
    assert 0.01 < popularity_recall < 0.25  # popularity is a real baseline, not a strawman


# --------------------------------------------------------------------------- respond


def test_respond_is_deterministic_and_follows_affinity() -> None:
    config = WorldConfig(n_users=50, n_items=400, seed=9)
    first, second = World.generate(config), World.generate(config)
    now = config.start + 3 * DAY
    source = Source("list-1", "discover", 2)
    a = first.respond("u-00003", "t-00010", now=now, device="mobile", source=source)
    b = second.respond("u-00003", "t-00010", now=now, device="mobile", source=source)
    assert a == b
    assert a.source == source and a.timestamp == now and a.country == first.users[3].country
    assert a.type in {EventType.PLAY, EventType.SKIP}
    assert validate_document(INTERACTION_SCHEMA, interaction_to_wire(a)) is None

    world = World.generate(config)
    skips = {"low": [], "high": []}
    for user in world.user_ids:
        scores = world.affinities(user)
        for label, index in (("low", int(scores.argmin())), ("high", int(scores.argmax()))):
            for _ in range(5):
                event = world.respond(user, world.item_ids[index], now=now, device="desktop")
                skips[label].append(event.type is EventType.SKIP)
    assert np.mean(skips["low"]) > np.mean(skips["high"]) + 0.4
    with pytest.raises(KeyError):
        world.respond("u-nobody", "t-00000", now=now, device="tv")


def test_respond_makes_liked_items_favourites() -> None:
    world = World.generate(WorldConfig(n_users=20, n_items=300, seed=13))
    user = "u-00002"
    favourite = world.item_ids[int(world.affinities(user).argmax())]
    for _ in range(30):
        world.respond(user, favourite, now=SMALL.start, device="speaker")
    later = [e for e in world.events(20_000) if e.user_id == user]
    assert sum(e.item_id == favourite for e in later) >= 0.1 * len(later)
