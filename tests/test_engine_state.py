"""Decaying counters, the item index and per-user state."""

from __future__ import annotations

import gc
import pickle
import tracemalloc
import weakref
from array import array

import numpy as np
import pytest

from stream.engine.state import _ARRAYS, _SCALARS, DecayingVector, ItemIndex, UserState
from stream.models import CatalogItem


def test_decay_halves_after_one_half_life() -> None:
    counts = DecayingVector(half_life=3_600.0)
    counts.add(0, 8.0, at=1_000.0)
    assert counts.value(0, now=1_000.0) == pytest.approx(8.0)
    assert counts.value(0, now=4_600.0) == pytest.approx(4.0)
    assert counts.value(0, now=8_200.0) == pytest.approx(2.0)


def test_decay_survives_rescaling_over_many_half_lives() -> None:
    counts = DecayingVector(half_life=1.0)
    counts.add(1, 1.0, at=0.0)
    counts.add(2, 1.0, at=100.0)  # 2**100 would overflow the stored factor without rescaling
    counts.add(2, 1.0, at=200.0)
    assert counts.value(2, now=200.0) == pytest.approx(1.0 + 2.0**-100)
    assert counts.value(1, now=200.0) == pytest.approx(0.0, abs=1e-30)
    assert np.isfinite(counts.values).all()


def test_vector_matches_value() -> None:
    counts = DecayingVector(half_life=10.0)
    for row, at in [(0, 0.0), (3, 5.0), (3, 9.0)]:
        counts.add(row, 1.0, at=at)
    vector = counts.vector(5, now=20.0)
    assert vector.tolist() == pytest.approx([counts.value(r, now=20.0) for r in range(5)])


def catalog_item(
    item_id: str, artist: str = "A", genres: tuple[str, ...] = ("pop",)
) -> CatalogItem:
    return CatalogItem(item_id, f"Title {item_id}", artist, genres, 180_000, 0.0)


def test_item_index_rows_metadata_and_removal() -> None:
    index = ItemIndex()
    bare = index.add("x")
    row = index.upsert(catalog_item("y", "Aurora", ("ambient", "electronic", "chill", "extra")))
    assert (bare, row) == (0, 1)
    assert index.label(bare) == "x" and index.label(row) == "Title y"
    assert index.genre_names(row) == ["ambient", "electronic", "chill"]
    assert index.artist_items[index.artist_rows["Aurora"]] == [row]
    assert index.remove("y") and not index.active[row]
    assert not index.remove("y") and not index.remove("never-seen")
    index.upsert(catalog_item("y", "Other"))  # re-listed, by another artist
    assert index.active[row]
    assert index.artist_items[index.artist_rows["Aurora"]] == []
    assert index.artist_items[index.artist_rows["Other"]] == [row]


def _catalog_of_three() -> tuple[ItemIndex, list[CatalogItem]]:
    index = ItemIndex()
    index.add("event-only")
    entries = [
        CatalogItem("a", "Song A", "Aurora", ("ambient", "electronic", "chill", "extra"), 1, 5.5),
        CatalogItem("b", "Song B", "Aurora", ("ambient", "electronic", "chill", "extra"), 2, 0.0),
        CatalogItem("c", "Song C", "Iron Vale", ("metal",), 86_400_000, 1_764_000_000.25),
    ]
    for item in entries:
        index.upsert(item)
    return index, entries


def test_item_index_gives_back_each_entry_exactly_sharing_names() -> None:
    index, entries = _catalog_of_three()
    assert [index.entry(row) for row in range(4)] == [None, *entries]
    assert list(index.catalog) == [None, *entries] and index.catalog[-1] == entries[-1]
    a, b = index.entry(1), index.entry(2)
    assert a.genres is b.genres and a.artist is b.artist  # one tuple, one string for both
    assert index.names(0) is None and index.names(3) == ("c", "Iron Vale", ("metal",))
    index.upsert(CatalogItem("a", "Song A2", "Iron Vale", ("metal",), 3, 7.0))  # changed
    assert index.entry(1) == CatalogItem("a", "Song A2", "Iron Vale", ("metal",), 3, 7.0)
    assert len(index.genre_set_list) == 2  # the same genres, the same shared tuple


def test_item_index_pickles_and_reads_an_index_pickled_with_whole_entries() -> None:
    index, entries = _catalog_of_three()
    restored = pickle.loads(pickle.dumps(index))
    assert list(restored.catalog) == [None, *entries]
    assert restored.genre_sets == index.genre_sets
    # An index pickled before entries were kept in parts: a CatalogItem (or None) per row.
    old = pickle.loads(pickle.dumps(index.__getstate__()))
    old["catalog"] = [None, *entries]
    old["genre_sets"] = {genres: genres for genres in {e.genres for e in entries}}
    for name in ("titles", "genre_set_of", "genre_set_list"):
        del old[name]
    converted = ItemIndex.__new__(ItemIndex)
    converted.__setstate__(old)
    assert list(converted.catalog) == [None, *entries]
    assert converted.n_catalog == 3 and converted.in_catalog("c")
    assert converted.genre_names(1) == ["ambient", "electronic", "chill"]
    row = converted.upsert(CatalogItem("d", "Song D", "Aurora", ("metal",), 4, 0.0))
    assert converted.entry(row).genres is converted.entry(3).genres


def test_item_index_grows_past_its_capacity() -> None:
    index = ItemIndex()
    rows = [index.add(f"i{n}") for n in range(500)]
    assert rows == list(range(500))
    assert index.active[:500].all() and len(index) == 500


def test_user_state_seen_set_and_ring_buffer() -> None:
    user = UserState(capacity=3)
    for row, weight, at in [
        (9, 1.0, 1.0),
        (4, -1.0, 2.0),
        (9, 0.5, 3.0),
        (7, 1.0, 4.0),
        (1, 1.0, 5.0),
    ]:
        user.remember(row, weight, at)
    assert user.seen_rows().tolist() == [1, 4, 7, 9]
    assert user.has_seen(4) and not user.has_seen(5)
    assert [r for r, _, _ in user.newest_first()] == [1, 7, 9]
    assert user.last_weight() == 1.0
    assert user.last_weight_of(9) == 0.5
    assert user.last_weight_of(4) is None  # fell out of the ring


def test_user_state_pickles() -> None:
    user = UserState(capacity=4)
    user.remember(3, 1.0, 1.0)
    user.plays = 1
    user.last_event_id = "e1"
    clone = pickle.loads(pickle.dumps(user))
    assert clone.seen_rows().tolist() == [3]
    assert clone.plays == 1 and clone.last_event_id == "e1"
    assert list(clone.newest_first()) == list(user.newest_first())


# ---------------------------------------------------------------- compact users


def _fields(user: UserState) -> dict[str, object]:
    """Every field, the arrays as (typecode, values): reading them thaws the user."""
    values = {name: getattr(user, name) for name in _SCALARS}
    for name, _ in _ARRAYS:
        array_ = getattr(user, name)
        values[name] = (array_.typecode, array_.tolist())
    return values


def _busy_user(seed: int, capacity: int = 5) -> UserState:
    rng = np.random.default_rng(seed)
    user = UserState(capacity)
    for n in range(int(rng.integers(0, 12))):
        user.remember(int(rng.integers(0, 50)), float(rng.normal()), float(n))
    user.plays, user.skips, user.replays = (int(v) for v in rng.integers(0, 300, size=3))
    user.last_event_id = None if seed % 3 == 0 else f"e-{seed}"
    user.last_event_at = None if seed % 3 == 0 else float(seed) + 0.25
    user.taste_origin = None if seed % 2 else 12.5
    for keys, values, typecode in (
        (user.genre_keys, user.genre_values, "f"),
        (user.artist_keys, user.artist_values, "f"),
        (user.arm_rows, user.arm_ids, "b"),
    ):
        for _ in range(int(rng.integers(0, 4))):
            keys.append(int(rng.integers(0, 100)))
            values.append(float(rng.normal()) if typecode == "f" else int(rng.integers(-1, 5)))
    return user


@pytest.mark.parametrize("seed", range(12))
def test_freezing_and_thawing_keep_every_field_exactly(seed: int) -> None:
    user = _busy_user(seed)
    before = _fields(user)
    user.freeze()
    assert user.frozen
    assert pickle.loads(pickle.dumps(user)).frozen  # restored frozen, as written
    assert _fields(pickle.loads(pickle.dumps(user))) == before
    assert _fields(user) == before and not user.frozen
    user.freeze()
    user.remember(7, 0.5, 99.0)  # learning thaws, then changes the live arrays
    assert user.has_seen(7) and user.last_weight() == 0.5


def test_pickled_state_is_the_same_frozen_or_not() -> None:
    thawed, frozen = _busy_user(4), _busy_user(4)
    frozen.freeze()
    assert thawed.__getstate__() == frozen.__getstate__()
    assert not thawed.frozen and frozen.frozen


def test_only_the_most_recently_thawed_users_stay_thawed(monkeypatch) -> None:
    monkeypatch.setattr(UserState, "max_thawed", 3)
    users = [_busy_user(seed) for seed in range(6)]  # new users count as thawed
    assert [user.frozen for user in users] == [True, True, True, False, False, False]
    assert users[0].n_seen == len(users[0].seen)  # reading thaws users[0]...
    assert users[3].frozen and not users[0].frozen  # ...and freezes the oldest thawed
    assert sum(not user.frozen for user in users) == 3


def _thawed_users() -> list[UserState]:
    """The live users the thawed list holds (dead entries are skipped)."""
    return [user for ref in list(UserState._thawed.values()) if (user := ref()) is not None]


def test_a_forgotten_or_discarded_user_is_freed_at_once() -> None:
    from stream.engine import Engine, EngineConfig
    from stream.simulator import World, WorldConfig

    world = World.generate(WorldConfig(n_users=30, n_items=80, seed=5))
    engine = Engine(EngineConfig(seed=0))
    for event in world.events(400):
        engine.learn(event)
    user_id, user = max(engine.users.items(), key=lambda pair: pair[1].n_events)
    user.last_event_id = "forgotten-marker"
    assert not user.frozen  # just learned from: thawed, in the thawed list
    forgotten = weakref.ref(user)
    del user
    assert engine.forget_user(user_id)
    gc.collect()
    assert forgotten() is None
    assert not any(u.last_event_id == "forgotten-marker" for u in _thawed_users())

    others = [weakref.ref(user) for user in engine.users.values()]
    assert any(ref() is not None and not ref().frozen for ref in others)
    del engine
    gc.collect()
    assert all(ref() is None for ref in others)  # a discarded engine takes its users along


def test_eviction_freezes_the_least_recently_thawed_live_users(monkeypatch) -> None:
    monkeypatch.setattr(UserState, "max_thawed", 2)
    first, dropped, third = (_busy_user(seed) for seed in range(3))
    assert first.frozen and not dropped.frozen and not third.frozen
    del dropped
    gc.collect()
    assert len(UserState._thawed) == 2 and _thawed_users() == [third]  # its entry is dead
    assert first.n_seen == len(first.seen)  # thaws first: the dead entry goes, not third
    assert not first.frozen and not third.frozen and _thawed_users() == [third, first]
    fourth = _busy_user(3)
    assert third.frozen and _thawed_users() == [first, fourth]


def test_a_reused_id_replaces_the_dead_users_entry(monkeypatch) -> None:
    monkeypatch.setattr(UserState, "max_thawed", 2)
    restored = UserState.__new__(UserState)  # as unpickling makes it: frozen, not listed
    restored.__setstate__(_busy_user(1).__getstate__())
    dead = weakref.ref(UserState(1))
    gc.collect()
    older, newer = UserState(1), UserState(1)
    assert dead() is None
    # A dead user that had the same id, listed as the least recently thawed.
    UserState._thawed[id(restored)] = dead
    UserState._thawed.move_to_end(id(restored), last=False)
    assert restored.seen is not None  # thaws: listed as the most recently thawed...
    assert list(UserState._thawed) == [id(newer), id(restored)]
    assert older.frozen and not newer.frozen and not restored.frozen  # ...older made room


@pytest.mark.parametrize("freeze", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 5])
def test_pickling_keeps_every_field_frozen_or_thawed(seed: int, freeze: bool) -> None:
    user = _busy_user(seed)
    before = _fields(user)
    if freeze:
        user.freeze()
    state = user.__getstate__()
    copy = pickle.loads(pickle.dumps(user))
    assert user.frozen == freeze  # pickling neither thaws nor freezes
    assert copy.frozen  # restored frozen (as a snapshot is read)
    assert copy.__getstate__() == state
    assert _fields(copy) == before == _fields(user)
    assert not copy.frozen and any(u is copy for u in _thawed_users())
    assert pickle.loads(pickle.dumps(copy)).__getstate__() == state


def test_a_state_pickled_before_packing_is_read_and_keeps_its_full_ring() -> None:
    user = UserState(4)
    for row in (5, 6):
        user.remember(row, 1.0, float(row))
    # The previous layout: every field by name, the ring always ``capacity`` slots long.
    old_state = {name: getattr(user, name) for name in _SCALARS if name != "capacity"}
    old_state.update({name: getattr(user, name) for name, _ in _ARRAYS})
    old_state["recent_rows"] = array("i", [5, 6, -1, -1])
    old_state["recent_weights"] = array("f", [1.0, 1.0, 0.0, 0.0])
    old_state["recent_times"] = array("d", [5.0, 6.0, 0.0, 0.0])
    old = UserState.__new__(UserState)
    old.__setstate__(pickle.loads(pickle.dumps(old_state)))
    assert old.frozen and old.capacity == 4
    for row in (7, 8, 9):  # fills the padded ring in place, then wraps, as before
        old.remember(row, 1.0, float(row))
        user.remember(row, 1.0, float(row))
        assert list(old.newest_first()) == list(user.newest_first())
    assert old.recent_rows.tolist() == [9, 6, 7, 8] and user.recent_rows.tolist() == [9, 6, 7, 8]


def test_the_ring_grows_with_the_first_events_then_wraps() -> None:
    user = UserState(3)
    sizes = []
    for row in range(5):
        user.remember(row, 1.0, float(row))
        sizes.append(len(user.recent_rows))
    assert sizes == [1, 2, 3, 3, 3]
    assert [row for row, _, _ in user.newest_first()] == [4, 3, 2]
    assert user.last_weight_of(1) is None and user.last_weight_of(3) == 1.0


def test_a_frozen_user_with_a_few_events_costs_a_few_hundred_bytes() -> None:
    users = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(3_000):
            user = UserState(32)
            user.remember(n % 97, 1.0, 1.5)
            user.remember(n % 89 + 100, -0.5, 2.5)
            user.last_event_id, user.last_event_at, user.taste_origin = f"e{n}", 2.5, 1.5
            for key in (3, 4, 5):
                user.genre_keys.append(key)
                user.genre_values.append(0.5)
            user.artist_keys.append(n % 7)
            user.artist_values.append(1.0)
            user.freeze()
            users.append(user)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / len(users) < 420, f"{held / len(users):.0f} bytes per user"


def test_freezing_changes_no_list_nor_snapshot(monkeypatch) -> None:
    """The same stream with (nearly) every user frozen between events, or none."""
    from stream.engine import Engine, EngineConfig
    from stream.simulator import World, WorldConfig

    world = World.generate(WorldConfig(n_users=60, n_items=120, seed=11))
    events = list(world.events(2_500))
    now = events[-1].timestamp + 60.0
    outputs = []
    for max_thawed in (1_000_000, 1):
        monkeypatch.setattr(UserState, "max_thawed", max_thawed)
        engine = Engine(EngineConfig(seed=0))
        for item in world.catalog:
            engine.upsert_item(item)
        lists = []
        for n, event in enumerate(events):
            engine.learn(event)
            if n % 97 == 0:
                lists.append(engine.recommend(event.user_id, now=event.timestamp))
        lists += [engine.recommend(user, now=now) for user in sorted(engine.users)]
        outputs.append((lists, engine.snapshot()))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1] == outputs[1][1]
