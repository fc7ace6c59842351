from hypothesis import given
from hypothesis import strategies as st

from stream.dedupe import RecentIds


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
    import pytest

    with pytest.raises(ValueError, match="capacity"):
        RecentIds(0)
