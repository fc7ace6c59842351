"""Moving users between engines (partition handoff): export, import, drop.

Engine A learns a stream; engine B has its own item rows (another catalog order,
extra items, and none of one artist's items), its own genre and artist keys and
its own users. The users exported from A and imported into B must keep every
user-side fact, named by item id, genre and artist, whatever B's rows are.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.engine import DISCOVER
from stream.models import CatalogItem, EventType, Interaction, Source
from stream.simulator import World, WorldConfig
from stream.wrapped import ListeningHistory

MOVERS = 6


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=40, n_items=250, seed=5))


@pytest.fixture(scope="module")
def events(world: World) -> list[Interaction]:
    return list(world.events(4_000))


@pytest.fixture(scope="module")
def movers(events: list[Interaction]) -> list[str]:
    return [user for user, _ in Counter(e.user_id for e in events).most_common(MOVERS)]


@pytest.fixture(scope="module")
def now(events: list[Interaction]) -> float:
    return events[-1].timestamp + 60.0


@pytest.fixture(scope="module")
def missing_artist(world: World, events: list[Interaction], movers: list[str]) -> str:
    """An artist some mover played that engine B never hears of."""
    artist_of = {item.item_id: item.artist for item in world.catalog}
    played = Counter(artist_of[e.item_id] for e in events if e.user_id == movers[0])
    return played.most_common(1)[0][0]


def _trained(world: World, events: list[Interaction]) -> Engine:
    engine = Engine(EngineConfig(seed=0))
    for item in world.catalog:
        engine.upsert_item(item)
    for event in events:
        engine.learn(event)
    return engine


@pytest.fixture(scope="module")
def source(world: World, events: list[Interaction], movers: list[str], now: float) -> Engine:
    """Engine A: the movers' previous owner, after serving them a list (Discover memory)."""
    engine = _trained(world, events)
    for user in movers:
        engine.recommend(user, now=now)
    return engine


def _other_engine(
    world: World, events: list[Interaction], movers: list[str], missing_artist: str
) -> Engine:
    """Engine B: extra items first, the catalog reversed and without one artist, other users."""
    engine = Engine(EngineConfig(seed=1))
    for n in range(20):
        engine.upsert_item(CatalogItem(f"x{n}", f"Extra {n}", "Nobody Else", ("zydeco",), 1, 0.0))
    missing = {item.item_id for item in world.catalog if item.artist == missing_artist}
    for item in reversed(world.catalog):
        if item.item_id not in missing:
            engine.upsert_item(item)
    for event in events:
        if event.user_id not in movers and event.item_id not in missing:
            engine.learn(event)
    # A mover B already has state for (to be replaced): other items, other counts.
    for n in range(5):
        engine.learn(Interaction(f"b{n}", movers[0], f"x{n}", EventType.SKIP, 100.0 + n))
    return engine


def _roundtrip(exported: dict[str, Any]) -> dict[str, Any]:
    return pickle.loads(pickle.dumps(exported, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.fixture(scope="module")
def transplanted(
    world: World,
    events: list[Interaction],
    movers: list[str],
    missing_artist: str,
    source: Engine,
) -> Engine:
    engine = _other_engine(world, events, movers, missing_artist)
    assert engine.import_users(_roundtrip(source.export_users(movers))) == len(movers)
    return engine


def _seen(engine: Engine, user: str) -> dict[str, float | None]:
    state = engine.users[user]
    ids = engine.items.ids
    return {ids[row]: engine.users[user].last_outcome(row) for row in state.seen}


def _arm_memory(engine: Engine, user: str) -> list[tuple[str, str]]:
    state = engine.users[user]
    arms = engine.config.discover_arms
    return [
        (engine.items.ids[row], arms[arm])
        for row, arm in zip(state.arm_rows, state.arm_ids, strict=True)
    ]


def _equal(left: Any, right: Any) -> bool:
    """Deep equality of exports (dicts, lists, numpy arrays with their dtype)."""
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        return (
            isinstance(left, np.ndarray)
            and isinstance(right, np.ndarray)
            and left.dtype == right.dtype
            and np.array_equal(left, right)
        )
    if isinstance(left, dict):
        return (
            isinstance(right, dict)
            and list(left) == list(right)
            and all(_equal(left[key], right[key]) for key in left)
        )
    if isinstance(left, list | tuple):
        return (
            type(left) is type(right)
            and len(left) == len(right)
            and all(_equal(a, b) for a, b in zip(left, right, strict=True))
        )
    return type(left) is type(right) and left == right


# ---------------------------------------------------------------- the setup is what it claims


def test_the_two_engines_number_items_genres_and_artists_differently(
    source: Engine, transplanted: Engine, movers: list[str], missing_artist: str
) -> None:
    a, b = source.items, transplanted.items
    shared = [item for item in a.ids if item in b.rows]
    assert sum(a.rows[item] != b.rows[item] for item in shared) > 0.9 * len(shared)
    assert a.genres != b.genres[: len(a.genres)] and a.artists != b.artists[: len(a.artists)]
    assert missing_artist in a.artists and missing_artist in b.artists  # added by the import
    moved_ids = {item for user in movers for item in _seen(source, user)}
    missing_rows = [
        b.rows[item] for item in moved_ids if a.artist_name(a.rows[item]) == missing_artist
    ]
    assert missing_rows and all(b.catalog[row] is None for row in missing_rows)  # event-only


# ---------------------------------------------------------------- user-side facts move exactly


def test_counts_last_event_and_recent_events_move(
    source: Engine, transplanted: Engine, movers: list[str]
) -> None:
    for user in movers:
        assert transplanted.user_counts(user) == source.user_counts(user)
        assert transplanted.recent_events(user, 100) == source.recent_events(user, 100)
        before, after = source.users[user], transplanted.users[user]
        assert (after.last_event_id, after.last_event_at) == (
            before.last_event_id,
            before.last_event_at,
        )
        assert after.n_recent == before.n_recent


def test_taste_affinities_move_by_name(
    source: Engine, transplanted: Engine, movers: list[str], missing_artist: str, now: float
) -> None:
    for user in movers:
        for query in ("top_genres", "top_artists"):
            before = dict(getattr(source, query)(user, 100, now=now))
            after = dict(getattr(transplanted, query)(user, 100, now=now))
            assert before and after == pytest.approx(before, rel=1e-12)
    assert missing_artist in dict(source.top_artists(movers[0], 100, now=now))


def test_item_affinity_uses_the_new_keys(
    source: Engine, transplanted: Engine, movers: list[str]
) -> None:
    """Items both engines know by catalog: the user's affinity to each one is unchanged."""
    a, b = source.items, transplanted.items
    both = [i for i in a.ids if i in b.rows and b.catalog[b.rows[i]] is not None]
    for user in movers:
        rows_a = np.array([a.rows[i] for i in both])
        rows_b = np.array([b.rows[i] for i in both])
        scores_a = source.taste.scores(source.users[user], a, rows_a)
        scores_b = transplanted.taste.scores(transplanted.users[user], b, rows_b)
        assert np.any(scores_a != 0)
        np.testing.assert_allclose(scores_b, scores_a, rtol=1e-6)


def test_seen_items_move_and_are_never_recommended(
    source: Engine, transplanted: Engine, movers: list[str], now: float
) -> None:
    for user in movers:
        seen = _seen(source, user)
        assert _seen(transplanted, user) == seen
        assert np.all(np.diff(transplanted.users[user].seen_rows()) > 0)  # still sorted
        listed = transplanted.recommend(user, now=now).item_ids()
        assert listed and not set(listed) & set(seen)
        assert not set(transplanted.rank(user, 50, now=now)) & set(seen)


def test_latent_factors_move(source: Engine, transplanted: Engine, movers: list[str]) -> None:
    for user in movers:
        vector = transplanted.factors.user_vector(user)
        assert vector is not None and vector.dtype == np.float32
        np.testing.assert_array_equal(vector, source.factors.river.u_latents[user])
        assert transplanted.factors.river.u_biases[user] == source.factors.river.u_biases[user]


def test_discover_memory_moves_and_credits_the_arm(
    source: Engine,
    world: World,
    events: list[Interaction],
    movers: list[str],
    missing_artist: str,
    now: float,
) -> None:
    engine = _other_engine(world, events, movers, missing_artist)
    engine.import_users(source.export_users(movers))
    for user in movers:
        memory = _arm_memory(source, user)
        assert memory and _arm_memory(engine, user) == memory
    user = movers[1]
    item, arm = _arm_memory(engine, user)[0]
    trials = engine.explorer.trials.get(arm, 0)
    engine.learn(
        Interaction("d1", user, item, EventType.PLAY, now + 1, source=Source("l", DISCOVER, 0))
    )
    assert engine.explorer.trials[arm] == trials + 1
    assert item not in dict(_arm_memory(engine, user))


# ---------------------------------------------------------------- same rows: a no-op


def test_same_rows_transplant_changes_no_list(
    source: Engine, events: list[Interaction], movers: list[str], now: float
) -> None:
    """Into a copy of A without the movers: lists, and what they learn next, stay A's."""
    a = Engine.restore(source.snapshot())
    b = Engine.restore(source.snapshot())
    assert b.drop_users(movers) == len(movers)
    assert not any(b.known_user(user) or b.factors.knows_user(user) for user in movers)
    assert b.import_users(_roundtrip(a.export_users(movers))) == len(movers)
    for user in movers:
        assert b.users[user].__getstate__() == a.users[user].__getstate__()
        assert b.recommend(user, now=now) == a.recommend(user, now=now)
    later = [
        dataclasses.replace(e, event_id=f"n{n}", timestamp=now + n, source=None)
        for n, e in enumerate(e for e in events[-1_000:] if e.user_id in movers)
    ]
    for event in later:
        assert b.predict_skip(event) == a.predict_skip(event)
        a.learn(event)
        b.learn(event)
    for user in movers:
        assert b.recommend(user, now=now + 5_000) == a.recommend(user, now=now + 5_000)


# ---------------------------------------------------------------- replace, skip, no sharing


def test_import_replaces_a_user_without_trace(
    source: Engine,
    transplanted: Engine,
    world: World,
    events: list[Interaction],
    movers: list[str],
    missing_artist: str,
) -> None:
    user = movers[0]
    before = _other_engine(world, events, movers, missing_artist)
    assert _seen(before, user).keys() == {f"x{n}" for n in range(5)}
    assert not any(item.startswith("x") for item in _seen(transplanted, user))
    assert transplanted.user_counts(user) == source.user_counts(user)
    np.testing.assert_array_equal(
        transplanted.factors.user_vector(user), source.factors.user_vector(user)
    )


def test_unknown_ids_are_skipped(source: Engine, movers: list[str]) -> None:
    exported = source.export_users(["nobody", movers[0], movers[0], "nobody-else"])
    assert list(exported["users"]) == [movers[0]]
    engine = Engine(EngineConfig(seed=0))
    assert engine.import_users(exported) == 1
    assert not engine.known_user("nobody") and engine.drop_users(["nobody"]) == 0
    nobody = source.export_users(["nobody"])
    assert nobody["users"] == [] and Engine(EngineConfig(seed=0)).import_users(nobody) == 0


def test_export_and_import_share_nothing(
    source: Engine, events: list[Interaction], movers: list[str], now: float
) -> None:
    a = Engine.restore(source.snapshot())
    exported = a.export_users(movers)
    kept = copy.deepcopy(exported)
    b = Engine(EngineConfig(seed=0))
    b.import_users(exported)
    assert _equal(exported, kept)  # import does not modify its input
    later = [
        dataclasses.replace(e, event_id=f"m{n}", timestamp=now + n, source=None)
        for n, e in enumerate(e for e in events[-500:] if e.user_id in movers)
    ]
    for event in later:
        a.learn(event)
        b.learn(event)
    assert _equal(exported, kept)  # neither engine's learning reaches the export
    exported["mf_latents"][:] = 0.0  # nor does changing the export reach B
    exported["recent"]["weights"][:] = 0.0
    assert all(np.any(b.factors.user_vector(user) != 0) for user in movers)
    assert all(any(w for _, w, _ in b.recent_events(user, 5)) for user in movers)


def test_import_refuses_another_format_or_factor_size(source: Engine, movers: list[str]) -> None:
    exported = source.export_users(movers[:1])
    engine = Engine(EngineConfig(seed=0, n_factors=8))
    with pytest.raises(ValueError, match="latents"):
        engine.import_users(exported)
    with pytest.raises(ValueError, match="format"):
        Engine(EngineConfig(seed=0)).import_users({**exported, "format": 99})
    assert not engine.users and not engine.items.ids  # refused before changing anything


def test_smaller_caps_keep_the_newest_events_and_the_strongest_taste(
    source: Engine, movers: list[str], now: float
) -> None:
    arms = ("taste", "mf")
    small = Engine(
        EngineConfig(
            seed=0, history_size=5, max_taste_artists=3, max_arm_memory=4, discover_arms=arms
        )
    )
    small.import_users(source.export_users(movers))
    for user in movers:
        assert small.recent_events(user, 100) == source.recent_events(user, 5)
        assert small.users[user].n_recent == 5
        strongest = sorted(source.top_artists(user, 100, now=now), key=lambda kv: -abs(kv[1]))
        assert sorted(small.top_artists(user, 100, now=now)) == sorted(strongest[:3])
        kept = [entry for entry in _arm_memory(source, user) if entry[1] in arms][-4:]
        assert _arm_memory(small, user) == kept
    assert any(_arm_memory(small, user) for user in movers)


def test_a_user_known_to_the_factor_model_only_moves_as_such(source: Engine) -> None:
    a = Engine.restore(source.snapshot())
    a.factors.learn("latent-only", 0, 1.0)
    exported = a.export_users(["latent-only"])
    assert exported["users"] == ["latent-only"] and not exported["has_state"][0]
    b = Engine(EngineConfig(seed=0))
    b.learn(Interaction("e1", "latent-only", "t1", EventType.PLAY, 1.0))  # replaced below
    assert b.import_users(exported) == 1
    assert not b.known_user("latent-only") and b.factors.knows_user("latent-only")
    np.testing.assert_array_equal(
        b.factors.user_vector("latent-only"), a.factors.user_vector("latent-only")
    )
    assert b.drop_users(["latent-only"]) == 1 and not b.factors.knows_user("latent-only")


# ---------------------------------------------------------------- Wrapped


def _history(world: World, events: list[Interaction]) -> ListeningHistory:
    catalog = {item.item_id: item for item in world.catalog}
    history = ListeningHistory()
    for event in events:
        history.learn(event, catalog[event.item_id])
    return history


def test_wrapped_counters_move(world: World, events: list[Interaction], movers: list[str]) -> None:
    # Spread the stream over months so several periods are compared.
    spread = [
        dataclasses.replace(e, timestamp=e.timestamp + n * 3_000) for n, e in enumerate(events)
    ]
    old = _history(world, spread)
    new = _history(world, [e for e in spread[:300] if e.user_id not in movers[1:]])
    exported = old.export_users([*movers, "nobody"])
    kept = copy.deepcopy(exported)
    assert new.import_users(pickle.loads(pickle.dumps(exported))) == len(movers)
    for event in spread[-300:]:  # the old owner's later counting does not reach the export
        old.learn(dataclasses.replace(event, event_id="again"), None)
    assert exported == kept
    periods = {key for user in movers for key in old.months(user)}
    assert len(periods) > 2
    moved = _history(world, spread)
    for user in movers:
        for period in {*periods, *(key[:4] for key in periods)}:
            assert new.summary(user, period, top=50) == moved.summary(user, period, top=50)
    assert new.drop_users(movers) == len(movers)
    assert new.summary(movers[0], "2026")["events"] == 0


def test_wrapped_import_respects_smaller_caps() -> None:
    old = ListeningHistory()
    for month in range(1, 4):
        for item in range(3):
            at = 86_400.0 * 31 * (month - 1) + item
            old.learn(Interaction(f"e{month}{item}", "u", f"t{item}", EventType.PLAY, at), None)
    new = ListeningHistory(max_months=2, max_entries=2)
    new.import_users(old.export_users(["u"]))
    assert new.months("u") == ["1970-02", "1970-03"]
    summary = new.summary("u", "1970-03")
    assert summary["events"] == 3 and summary["truncated"]
    assert [entry["id"] for entry in summary["top_items"]] == ["t0", "t1"]


def test_the_handoff_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parent.parent / "bench" / "bench_transplant.py"
    spec = importlib.util.spec_from_file_location("bench_transplant", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    timings = bench.main(["--users", "20", "--items", "200", "--events-per-user", "40"])
    assert set(timings) >= {"export", "import", "drop"}
    assert "moving 20 of" in capsys.readouterr().out
