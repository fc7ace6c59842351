"""Item updates: engines that learn from different users share one item side (issue 7)."""

from __future__ import annotations

import base64
import pickle
import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.cooccurrence import PairJournal
from stream.engine.item_updates import (
    ItemUpdates,
    decode_item_updates,
    encode_item_updates,
)
from stream.models import EventType, Interaction
from stream.simulator import World, WorldConfig

#: No neighbour list ever fills up: co-occurrence then adds up exactly.
UNPRUNED = EngineConfig(seed=0, max_neighbours=400)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=80, n_items=400, seed=3))


@pytest.fixture(scope="module")
def events(world: World) -> list[Interaction]:
    return list(world.events(6_000))


def fresh(world: World, config: EngineConfig = UNPRUNED) -> Engine:
    engine = Engine(config)
    for item in world.catalog:
        engine.upsert_item(item)
    return engine


def exchange(*engines: Engine) -> None:
    """Each engine takes its updates; every other engine applies them (through the codec)."""
    taken = [engine.take_item_updates() for engine in engines]
    for source, updates in enumerate(taken):
        if updates is None:
            continue
        data = encode_item_updates(updates)
        for target, engine in enumerate(engines):
            if target != source:
                engine.apply_item_updates(decode_item_updates(data))


@pytest.fixture(scope="module")
def three(world: World, events: list[Interaction]) -> tuple[Engine, Engine, Engine]:
    """A and B learn disjoint halves of the users, exchanging every 200 events; C learns all."""
    a, b, c = fresh(world), fresh(world), fresh(world)
    for n, event in enumerate(events):
        (a, b)[zlib.crc32(event.user_id.encode()) % 2].learn(event)
        c.learn(event)
        if n % 200 == 199:
            exchange(a, b)
    exchange(a, b)
    return a, b, c


def by_id(engine: Engine, values: np.ndarray, ids: list[str]) -> np.ndarray:
    return np.array([values[engine.items.rows[item_id]] for item_id in ids])


def item_state(engine: Engine) -> dict[str, object]:
    """Every piece of item-side state, copied (to compare bit for bit)."""
    popularity, cooc, factors = engine.popularity, engine.cooccurrence, engine.factors
    river = factors.river
    vectors = {
        "plays": popularity.plays,
        "recent": popularity.recent_plays,
        "skips": popularity.skips,
        "totals": cooc.totals,
        **{f"context {key}": vector for key, vector in popularity.by_context.items()},
    }
    state: dict[str, object] = {
        name: (vector.values.copy(), vector.origin) for name, vector in vectors.items()
    }
    state.update(
        counters=(popularity.n_events, popularity.n_skips, popularity.last_time, popularity.n_rows),
        devices=list(popularity.devices),
        cooc=(cooc.neighbour_rows.copy(), cooc.strengths.copy(), cooc.counts.copy(), cooc.origin),
        factors=(
            factors.item_factors.copy(),
            factors.item_bias.copy(),
            factors.offset.copy(),
            factors.learned.copy(),
        ),
        river_items=(
            {row: latents.copy() for row, latents in river.i_latents.items()},
            dict(river.i_biases),
        ),
        global_mean=(river.global_mean.n, river.global_mean.get()),
        active=engine.items.active[: len(engine.items)].copy(),
    )
    return state


def assert_same(before: object, after: object) -> None:
    if isinstance(before, dict):
        assert isinstance(after, dict) and before.keys() == after.keys()
        for key in before:
            assert_same(before[key], after[key])
    elif isinstance(before, tuple | list):
        assert isinstance(after, tuple | list) and len(before) == len(after)
        for one, other in zip(before, after, strict=True):
            assert_same(one, other)
    elif isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray) and before.dtype == after.dtype
        assert np.array_equal(before, after, equal_nan=True)
    else:
        assert before == after


# ============================================================== replicas add up
def test_shared_counts_equal_one_engine_that_learned_everything(three, events) -> None:
    a, b, c = three
    ids = list(c.items.ids)
    assert set(a.items.ids) == set(b.items.ids) == set(ids)  # event-only items too
    now = events[-1].timestamp
    size = len(c.items)
    for name, read in [
        ("popularity", lambda e: e.popularity.popularity_vector(len(e.items), now=now)),
        ("recent", lambda e: e.popularity.recent_plays.vector(len(e.items), now=now)),
        ("skips", lambda e: e.popularity.skips.vector(len(e.items), now=now)),
        ("trending", lambda e: e.popularity.trending_vector(len(e.items), now=now)),
        ("totals", lambda e: e.cooccurrence.totals.vector(len(e.items), now=now)),
    ]:
        expected = by_id(c, read(c), ids)
        assert np.isfinite(expected).any() and expected[np.isfinite(expected)].max() > 0, name
        for engine in (a, b):
            assert by_id(engine, read(engine), ids) == pytest.approx(expected, rel=1e-9), name
    assert c.popularity.by_context
    for bucket, device in c.popularity.by_context:
        for engine in (a, b):
            assert (bucket, device) in engine.popularity.by_context
            expected = by_id(
                c, c.popularity.by_context[(bucket, device)].vector(size, now=now), ids
            )
            found = engine.popularity.by_context[(bucket, device)].vector(
                len(engine.items), now=now
            )
            assert by_id(engine, found, ids) == pytest.approx(expected, rel=1e-9)
            assert by_id(
                engine, engine.popularity.context_vector(size, now=now, device=device), ids
            ) == pytest.approx(
                by_id(c, c.popularity.context_vector(size, now=now, device=device), ids)
            )
    for engine in (a, b):
        assert engine.popularity.n_events == c.popularity.n_events == len(events)
        assert engine.popularity.skip_share == c.popularity.skip_share
        assert engine.popularity.last_time == c.popularity.last_time


def test_shared_cooccurrence_equals_one_engine(three, events) -> None:
    a, b, c = three
    now = events[-1].timestamp

    def pairs(engine: Engine) -> dict[tuple[str, str], float]:
        ids = engine.items.ids
        return {
            (ids[row], ids[other]): score
            for row in range(len(ids))
            for other, score in engine.cooccurrence.neighbours(row, 10_000, now=now)
        }

    expected = pairs(c)
    assert len(expected) > 1_000
    for engine in (a, b):
        found = pairs(engine)
        assert found.keys() == expected.keys()
        assert list(found.values()) == pytest.approx([expected[pair] for pair in found], rel=1e-5)
    item = c.items.ids[c.popular_rows[0]]
    similar_a, similar_b = a.similar_items(item, 10, now=now), b.similar_items(item, 10, now=now)
    assert [item_id for item_id, _ in similar_a] == [item_id for item_id, _ in similar_b]
    assert [score for _, score in similar_a] == pytest.approx([score for _, score in similar_b])


def test_item_factors_of_replicas_converge(three) -> None:
    a, b, c = three
    ids = [c.items.ids[row] for row in c.factors.learned_rows]
    for engine in (a, b):
        assert sorted(engine.items.ids[row] for row in engine.factors.learned_rows) == sorted(ids)
    factors_a = by_id(a, a.factors.item_factors, ids)
    factors_b = by_id(b, b.factors.item_factors, ids)
    assert np.abs(factors_a - factors_b).max() < 1e-5
    assert np.abs(factors_a).max() > 0.1  # learned, not all zero
    assert by_id(a, a.factors.item_bias, ids) == pytest.approx(
        by_id(b, b.factors.item_bias, ids), abs=1e-6
    )
    assert a.factors.river.global_mean.get() == pytest.approx(b.factors.river.global_mean.get())
    # Replicas agree with each other, not bit for bit with one engine: their SGD steps used
    # item factors that lagged behind the other engine's (asynchronous SGD).
    assert np.abs(factors_a - by_id(c, c.factors.item_factors, ids)).max() > 1e-5


def test_applied_updates_are_not_sent_on(world, events) -> None:
    a, b = fresh(world), fresh(world)
    for event in events[:300]:
        a.learn(event)
    b.apply_item_updates(a.take_item_updates())
    assert b.take_item_updates() is None
    assert a.take_item_updates() is None
    for event in events[300:400]:
        b.learn(event)
    mine = b.take_item_updates()
    assert mine is not None and mine.n_events == 100
    c = fresh(world)
    for event in events[300:400]:
        c.learn(event)
    now = events[399].timestamp
    alone = c.take_item_updates()  # the same events learned by an engine that applied nothing

    def plays(updates: ItemUpdates) -> dict[str, float]:
        items, values = updates.plays
        return {updates.item_ids[i]: value for i, value in zip(items, values, strict=True)}

    assert plays(mine).keys() == plays(alone).keys()
    assert list(plays(mine).values()) == pytest.approx([plays(alone)[i] for i in plays(mine)])
    assert mine.pairs.amounts.sum() == pytest.approx(alone.pairs.amounts.sum())
    assert b.popularity.popularity_vector(len(b.items), now=now) == pytest.approx(
        a.popularity.popularity_vector(len(b.items), now=now)
        + c.popularity.popularity_vector(len(b.items), now=now)
    )


def test_first_take_carries_everything_learned_before(world, events) -> None:
    a, b = fresh(world), fresh(world)
    for event in events[:1_000]:
        a.learn(event)
    b.apply_item_updates(decode_item_updates(encode_item_updates(a.take_item_updates())))
    now = events[999].timestamp
    size = len(a.items)
    assert b.popularity.popularity_vector(size, now=now) == pytest.approx(
        a.popularity.popularity_vector(size, now=now)
    )
    ids = [a.items.ids[row] for row in a.factors.learned_rows]
    assert (
        np.abs(by_id(b, b.factors.item_factors, ids) - by_id(a, a.factors.item_factors, ids)).max()
        < 1e-6
    )
    row = a.popular_rows[0]
    assert b.similar_items(a.items.ids[row], 5, now=now) == a.similar_items(
        a.items.ids[row], 5, now=now
    )


# ============================================================== item_side=False
def test_learning_without_the_item_side_leaves_item_state_bit_identical(world, events) -> None:
    engine = fresh(world)
    for event in events[:2_000]:
        engine.learn(event)
    assert engine.take_item_updates() is not None
    before = item_state(engine)
    user = events[0].user_id
    counts = engine.user_counts(user)
    latents = engine.factors.river.u_latents[user].copy()
    replay = [event for event in events[2_000:3_000]]
    replay.append(Interaction("new-1", user, "never-seen", EventType.PLAY, events[2_999].timestamp))
    replay.append(
        Interaction("new-2", "newcomer", replay[0].item_id, EventType.SKIP, replay[-1].timestamp)
    )
    replay.append(
        Interaction("new-3", user, events[5].item_id, EventType.PLAY, replay[-1].timestamp)
    )
    for event in replay:
        engine.learn(event, item_side=False)

    after = item_state(engine)
    assert "never-seen" in engine.items  # the item got a row, and nothing else
    assert engine.items.ids[-1] == "never-seen"
    for key in ("plays", "recent", "skips", "totals"):
        values, origin = after[key]
        after[key] = (values[: len(before[key][0])], origin)
    after["active"] = after["active"][: len(before["active"])]
    assert_same(before, after)
    assert engine.take_item_updates() is None

    # The user side learned.
    assert engine.user_counts(user)["play"] > counts["play"]
    assert not np.array_equal(engine.factors.river.u_latents[user], latents)
    assert engine.user_counts("newcomer") == {"play": 0, "skip": 1, "replay": 0}


def test_replay_without_item_side_after_applying_matches_learning(world, events) -> None:
    """A takeover: the item side arrives as updates, the user side is replayed."""
    learner, taker = fresh(world), fresh(world)
    for event in events[:1_500]:
        learner.learn(event)
    taker.apply_item_updates(learner.take_item_updates())
    for event in events[:1_500]:
        taker.learn(event, item_side=False)
    now = events[1_499].timestamp
    assert taker.take_item_updates() is None
    for user_id in {event.user_id for event in events[:1_500]}:
        assert taker.user_counts(user_id) == learner.user_counts(user_id)
        assert taker.recent_events(user_id, 10) == learner.recent_events(user_id, 10)
    size = len(learner.items)
    assert taker.popularity.trending_vector(size, now=now) == pytest.approx(
        learner.popularity.trending_vector(size, now=now)
    )


# ============================================================== new and removed items
def test_an_item_first_known_from_updates_can_be_recommended(world, events) -> None:
    a, b = fresh(world), fresh(world)
    for event in events[:500]:
        a.learn(event)
        b.learn(event)
    exchange(a, b)
    t = events[499].timestamp
    for n in range(30):  # a hit that only A's listeners play (not in the catalog)
        a.learn(Interaction(f"hit-{n}", f"fan-{n}", "surprise-hit", EventType.PLAY, t + n))
    assert "surprise-hit" not in b.items
    exchange(a, b)
    assert "surprise-hit" in b.items
    row = b.items.rows["surprise-hit"]
    assert b.factors.learned[row] and b.items.active[row]
    now = t + 60.0
    b.refresh(now=now)
    assert b.items.ids[b.trending_rows[0]] == "surprise-hit"
    listing = b.recommend("someone-new", now=now)
    assert "surprise-hit" in listing.item_ids()


def test_an_item_removed_here_stays_removed(world, events) -> None:
    a, b = fresh(world), fresh(world)
    for event in events[:1_000]:
        a.learn(event)
    gone = a.items.ids[a.popular_rows[0]]
    b.remove_item(gone)
    b.apply_item_updates(a.take_item_updates())
    now = events[999].timestamp
    b.refresh(now=now)
    assert not b.items.active[b.items.rows[gone]]
    assert b.popularity.play_count(b.items.rows[gone], now=now) > 0  # statistics still add up
    assert gone not in b.recommend("someone-new", now=now).item_ids()
    assert gone not in b.rank(events[0].user_id, 50, now=now)


def test_updates_from_an_engine_configured_differently_are_refused(world, events) -> None:
    a = fresh(world)
    for event in events[:100]:
        a.learn(event)
    updates = a.take_item_updates()
    for config in (
        UNPRUNED.replace(trending_half_life=3_600.0),
        UNPRUNED.replace(n_factors=8),
    ):
        other = fresh(world, config)
        before = other.snapshot()
        with pytest.raises(ValueError, match="half-lives|latent factors"):
            other.apply_item_updates(updates)
        assert other.snapshot() == before


# ============================================================== codec
def test_codec_round_trip(three) -> None:
    a, b, _ = three
    for event_id, (item, user) in enumerate([("x", "u1"), ("y", "u1"), ("x", "u2")]):
        a.learn(Interaction(f"rt-{event_id}", user, item, EventType.PLAY, 1e9 + event_id))
    updates = a.take_item_updates()
    data = encode_item_updates(updates)
    decoded = decode_item_updates(data)
    assert encode_item_updates(decoded) == data
    assert decoded.item_ids == updates.item_ids and "x" in decoded.item_ids
    assert decoded.reference_time == updates.reference_time
    assert decoded.n_events == 3 and decoded.contexts.keys() == updates.contexts.keys()
    assert np.array_equal(decoded.pairs.amounts, updates.pairs.amounts)
    assert decoded.factors is not None and updates.factors is not None
    assert decoded.factors.latents.dtype == np.float32
    assert np.array_equal(decoded.factors.latents, updates.factors.latents)
    assert np.array_equal(decoded.factors.biases, updates.factors.biases)
    empty = ItemUpdates(reference_time=0.0, half_lives=(1.0, 1.0, 1.0), n_factors=4, item_ids=())
    assert encode_item_updates(decode_item_updates(encode_item_updates(empty))) == (
        encode_item_updates(empty)
    )


def _valid_document(three) -> dict:
    a = three[0]
    a.learn(Interaction("doc-1", "doc-user", "x", EventType.PLAY, 2e9))
    a.learn(Interaction("doc-2", "doc-user", "y", EventType.SKIP, 2e9 + 1))
    return orjson.loads(encode_item_updates(a.take_item_updates()))


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(values.tobytes()).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: b"\xff not json", "document: not JSON"),
        (lambda d: [1, 2], "document: expected an object, got list"),
        (lambda d: {**d, "version": 9}, "version: 9, this code reads 1"),
        (lambda d: {k: v for k, v in d.items() if k != "pairs"}, "missing fields: pairs"),
        (lambda d: {**d, "extra": 1}, "unknown fields: extra"),
        (lambda d: {**d, "items": [*d["items"], d["items"][0]]}, "items: an item id appears twice"),
        (lambda d: {**d, "items": [1]}, "items: expected a list of non-empty item ids"),
        (lambda d: {**d, "reference_time": "now"}, "reference_time: expected a number, got str"),
        (lambda d: {**d, "half_lives": [1.0, 0.0, 1.0]}, "half_lives: not all positive"),
        (lambda d: {**d, "n_events": -1}, "n_events: expected a count"),
        (lambda d: {**d, "n_skips": d["n_events"] + 1}, "n_skips: more skips than events"),
        (lambda d: {**d, "plays": ["%%%", d["plays"][1]]}, "plays items: not base64"),
        (
            lambda d: {**d, "plays": [_b64(np.array([999], "<i4")), _b64(np.array([1.0]))]},
            "plays items: item index out of range",
        ),
        (
            lambda d: {**d, "plays": [_b64(np.array([0], "<i4")), _b64(np.array([np.nan]))]},
            "plays values: not all finite numbers",
        ),
        (
            lambda d: {**d, "plays": [_b64(np.array([0, 0], "<i4")), _b64(np.array([1.0, 2.0]))]},
            "plays: an item appears twice",
        ),
        (
            lambda d: {**d, "plays": [_b64(np.array([0], "<i4")), _b64(np.array([1.0, 2.0]))]},
            "plays: 1 items but 2 values",
        ),
        (
            lambda d: {**d, "skips": [_b64(np.array([0], "<i4")), "AAAA"]},
            "skips values: 3 bytes is not a whole number of 8-byte values",
        ),
        (lambda d: {**d, "contexts": [[0, "", "", ""]]}, "contexts: device '' is not a name"),
        (lambda d: {**d, "pairs": [d["pairs"][0]]}, "pairs: expected [first items, second items"),
        (
            lambda d: {
                **d,
                "factors": [d["factors"][0], _b64(np.zeros(3, "<f4")), d["factors"][2]],
            },
            "factors latents: 3 values, expected",
        ),
        (lambda d: {**d, "mean": 1.0}, "mean: expected [weight, total]"),
    ],
)
def test_malformed_updates_raise_value_error_naming_the_problem(three, change, message) -> None:
    document = _valid_document(three)
    assert decode_item_updates(orjson.dumps(document))  # the base document is valid
    changed = change(document)
    data = changed if isinstance(changed, bytes) else orjson.dumps(changed)
    with pytest.raises(ValueError, match="malformed item updates: ") as raised:
        decode_item_updates(data)
    assert message in str(raised.value)


# ============================================================== snapshots
def test_snapshot_keeps_what_was_not_taken_yet(world, events) -> None:
    engine = fresh(world)
    for event in events[:500]:
        engine.learn(event)
    engine.take_item_updates()
    for event in events[500:800]:
        engine.learn(event)
    restored = Engine.restore(engine.snapshot())
    for learner in (engine, restored):
        for event in events[800:900]:
            learner.learn(event)
    from_original = engine.take_item_updates()
    from_restored = restored.take_item_updates()
    assert from_original is not None and from_original.n_events == 400
    assert encode_item_updates(from_restored) == encode_item_updates(from_original)
    assert restored.take_item_updates() is None


def test_snapshots_keep_bases_only_where_not_yet_taken(world, events) -> None:
    sharing, alone = fresh(world), fresh(world)
    for event in events[:3_000]:
        sharing.learn(event)
        alone.learn(event)
    sharing.take_item_updates()  # the bases now copy every count vector and item factor
    for event in events[3_000:3_050]:
        sharing.learn(event)
        alone.learn(event)
    assert len(sharing.snapshot()) < 1.05 * len(alone.snapshot())


def test_factor_bases_are_kept_only_for_rows_changed_since_the_last_take(world, events) -> None:
    engine = fresh(world)
    for event in events[:2_000]:
        engine.learn(event)
    engine.take_item_updates()
    sync = engine.item_sync
    assert sync.mf_touched == {}  # no copy of the factor matrix: every base is its value
    for event in events[2_000:2_040]:
        engine.learn(event)
    learned_rows = set(engine.factors.learned_rows)
    assert 0 < len(sync.mf_touched) < 0.5 * len(learned_rows)
    for row, base in sync.mf_touched.items():
        # the factors before the first change since the take (or None: the initial ones)
        if base is not None:
            latents, bias = base
            assert latents.dtype == np.float32 and isinstance(bias, float)
            assert not np.array_equal(latents, engine.factors.item_factors[row])


def test_updates_across_a_forward_decay_rescale_add_up_exactly_elsewhere(world, events) -> None:
    """Counts learned before and after 70 trending half-lives (the trending vector moves
    its origin and rescales) reach a replica as they are at the sender."""
    sender, replica = fresh(world), fresh(world)
    late = 70 * sender.config.trending_half_life
    moved = [
        Interaction(
            e.event_id + "-late",
            e.user_id,
            e.item_id,
            e.type,
            e.timestamp + late,
            ms_played=e.ms_played,
            duration_ms=e.duration_ms,
        )
        for e in events[:300]
    ]
    origins = []
    # The last take spans the move: what was learned before it is rescaled with the vector.
    for batch in (events[:300], events[300:320] + moved):
        for event in batch:
            sender.learn(event)
            origins.append(sender.popularity.recent_plays.origin)
        updates = sender.take_item_updates()
        replica.apply_item_updates(decode_item_updates(encode_item_updates(updates)))
    assert origins[0] == origins[319] != origins[-1]  # the moved events moved the origin
    now = moved[-1].timestamp
    size = len(sender.items)
    for name in ("plays", "recent_plays", "skips"):
        ours = getattr(sender.popularity, name).vector(size, now=now)
        theirs = getattr(replica.popularity, name).vector(len(replica.items), now=now)
        rows = [replica.items.rows[item_id] for item_id in sender.items.ids]
        np.testing.assert_allclose(theirs[rows], ours, rtol=1e-9, atol=1e-300)


def owing_since_a_take(world, events) -> tuple[Engine, dict[str, Any]]:
    """An engine that took its updates after 500 events and learned 300 more, and a copy
    of its pickled state (to rewrite as an earlier layout)."""
    engine = fresh(world)
    for event in events[:500]:
        engine.learn(event)
    engine.take_item_updates()
    for event in events[500:800]:
        engine.learn(event)
    return engine, pickle.loads(pickle.dumps(engine.__getstate__()))


def test_a_snapshot_made_when_factor_bases_were_full_arrays_is_read_exactly(world, events) -> None:
    engine, state = owing_since_a_take(world, events)
    packed = state["item_sync"]
    # As the earlier code pickled it: a set of touched rows, the (empty) full base arrays.
    packed.mf_touched = set(packed.pending["factor_rows"].tolist())
    packed.factor_base = np.zeros((0, engine.factors.n_factors), dtype=np.float32)
    packed.bias_base = np.zeros(0)
    packed.has_base = np.zeros(0, dtype=bool)
    old = Engine.__new__(Engine)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert not hasattr(old.item_sync, "factor_base")
    for learner in (engine, old):
        for event in events[800:900]:
            learner.learn(event)
    assert encode_item_updates(old.take_item_updates()) == encode_item_updates(
        engine.take_item_updates()
    )


def test_a_snapshot_made_when_count_bases_were_full_copies_is_read_as_journals(
    world, events
) -> None:
    engine, state = owing_since_a_take(world, events)
    sync = state["item_sync"]
    rows = sync.pending["rows"]
    size = len(engine.items)
    # As the earlier code pickled it: the vectors without journals, and in the pending
    # part the bases of the touched rows (their values less what was learned since).
    old_counts = {}
    for key, vector in sync._vectors(_Restorable(state)):
        journal = vector.__dict__.pop("journal")
        learned = np.array([journal.get(row, 0.0) for row in rows.tolist()])
        old_counts[key] = vector.raw(size)[rows] - learned
    del state["popularity"].__dict__["journal_new_vectors"]
    sync.pending["counts"] = old_counts
    old = Engine.__new__(Engine)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    ours, theirs = engine.take_item_updates(), old.take_item_updates()
    assert ours.item_ids == theirs.item_ids and ours.n_events == theirs.n_events == 300
    for name in ("plays", "recent_plays", "skips", "pair_totals"):
        mine, converted = getattr(ours, name), getattr(theirs, name)
        np.testing.assert_array_equal(mine.items, converted.items)
        np.testing.assert_allclose(mine.values, converted.values, rtol=1e-9)


class _Restorable:
    """An engine's pickled state, read as ItemSync._vectors reads an engine."""

    def __init__(self, state: dict) -> None:
        self.popularity = state["popularity"]
        self.cooccurrence = state["cooccurrence"]


def test_snapshots_from_before_item_updates_owe_nothing(world, events) -> None:
    engine = fresh(world)
    for event in events[:500]:
        engine.learn(event)
    state = pickle.loads(pickle.dumps(engine.__getstate__()))
    del state["item_sync"]  # as pickled by code from before item updates
    old = Engine.__new__(Engine)
    old.__setstate__(state)
    restored = Engine.restore(old.snapshot())
    assert restored.item_sync is not None
    assert restored.take_item_updates() is None
    for event in events[500:600]:
        restored.learn(event)
    updates = restored.take_item_updates()
    assert updates is not None and updates.n_events == 100


# ============================================================== journal
def test_pair_journal_coalesces_and_stays_bounded() -> None:
    journal = PairJournal(half_life=10.0, limit=4)
    for n in range(1 << 16):
        journal.reserve(1)
        journal.append(np.array([n % 6]), np.array([6]), np.array([1.0 + n % 6]), at=0.0)
    first, second, amounts = journal.coalesced(at=0.0)
    assert len(journal) == 1 << 16 and sorted(first.tolist()) == list(range(6))
    journal.reserve(len(journal.entries))  # full: coalesced, then only the strongest kept
    first, second, amounts = journal.coalesced(at=0.0)
    assert first.tolist() == [4, 5] and second.tolist() == [6, 6]
    assert amounts.tolist() == pytest.approx([5.0 * 10922, 6.0 * 10922])
