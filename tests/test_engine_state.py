"""Decaying counters, the item index and per-user state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from stream.engine.state import DecayingVector, ItemIndex, UserState
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
