import pickle
import tracemalloc
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.dedupe import RecentIds, _contains, _digest


@settings(deadline=None)  # the first call may compile the probing loops (numba)
@given(st.lists(st.text(min_size=1, max_size=12), max_size=200), st.integers(1, 50))
def test_matches_a_plain_sliding_window_of_distinct_ids(ids, capacity):
    seen = RecentIds(capacity)
    window: list[str] = []
    for event_id in ids:
        expected_new = event_id not in window
        assert seen.add(event_id) is expected_new
        if expected_new:
            window.append(event_id)
            window = window[-capacity:]
    assert len(seen) == len(window)
    assert all(event_id in seen for event_id in window)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        RecentIds(0)


def _window_of(digests: list[int], capacity: int) -> list[int]:
    window: list[int] = []
    for digest in digests:
        if digest not in window:
            window = [*window, digest][-capacity:]
    return window


@pytest.mark.parametrize("capacity", [1, 7, 64, 300])
def test_the_hash_set_agrees_with_the_window_when_digests_collide(capacity):
    """Digests crowded onto a few home slots: long probe runs, wrap-around, deletions."""
    rng = np.random.default_rng(capacity)
    homes = rng.integers(0, 8, size=3_000, dtype=np.int64) * 61  # some near the end
    digests = (rng.integers(-40, 40, size=3_000, dtype=np.int64) << 40) | homes
    digests[digests == 0] = 1
    seen = RecentIds(capacity)
    reference: list[int] = []
    for start in range(0, len(digests), 100):
        chunk = digests[start : start + 100]
        added = seen._add_many(chunk)
        before = len(reference)
        reference = _window_of([*reference, *chunk.tolist()], capacity)
        assert added >= len(reference) - before
        assert seen.digests().tolist() == reference
        members = {int(d) for d in digests if _contains(seen._table, d)}
        assert members == set(reference)
        assert np.count_nonzero(seen._table) == len(reference)


def test_pickles_compactly_and_reads_the_set_and_deque_layout():
    seen = RecentIds(capacity=1_000)
    ids = [f"event-{n}" for n in range(1_500)]
    for event_id in ids:
        seen.add(event_id)
    copy = pickle.loads(pickle.dumps(seen))
    assert len(copy) == 1_000 and "event-499" not in copy and "event-500" in copy
    assert len(pickle.dumps(seen)) < 1_000 * 8 + 500
    assert copy.add("event-1499") is False and copy.add("event-0") is True
    # What a checkpoint of the previous layout held (ints in a set, in a deque by age).
    digests = [_digest(event_id) % 2**64 for event_id in ids[-1_000:]]  # were unsigned
    old = RecentIds.__new__(RecentIds)
    old.__setstate__({"capacity": 1_000, "_members": set(digests), "_order": deque(digests)})
    assert old.digests().tolist() == [_digest(event_id) for event_id in ids[-1_000:]]
    assert "event-500" in old and "event-499" not in old and len(old) == 1_000


def test_merge_keeps_the_capacity_and_the_order():
    mine, theirs = RecentIds(3), RecentIds(10)
    for event_id in "abc":
        mine.add(event_id)
    for event_id in "cde":
        theirs.add(event_id)
    assert mine.merge(theirs) == 2
    assert [event_id in mine for event_id in "abcde"] == [False, False, True, True, True]


def test_an_id_costs_at_most_about_24_bytes():
    seen = RecentIds(capacity=1_000_000)
    ids = [f"e{n}" for n in range(131_072)]  # fills the ring and the table to a power of two
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for event_id in ids:
            seen.add(event_id)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / len(ids) < 26, f"{held / len(ids):.1f} bytes per id"
    assert len(seen) == len(ids) and all(event_id in seen for event_id in ids[::997])
    assert "e-1" not in seen and seen.add(ids[0]) is False
