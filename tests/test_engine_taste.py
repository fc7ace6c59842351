"""Per-user decayed genre and artist affinities."""

from __future__ import annotations

import numpy as np
import pytest

from stream.engine.state import ItemIndex, UserState
from stream.engine.taste import TasteProfile

DAY = 86_400.0


@pytest.fixture
def items() -> ItemIndex:
    from stream.models import CatalogItem

    index = ItemIndex()
    for item_id, artist, genres in [
        ("calm", "Aurora Fields", ("ambient", "electronic")),
        ("calmer", "Aurora Fields", ("ambient",)),
        ("loud", "Iron Vale", ("metal",)),
        ("other", "Someone", ("jazz",)),
    ]:
        index.upsert(CatalogItem(item_id, item_id.title(), artist, genres, 180_000, 0.0))
    index.add("no-metadata")
    return index


def test_affinities_follow_signals_and_halve_per_half_life(items: ItemIndex) -> None:
    taste = TasteProfile(half_life=30 * DAY, max_genres=8, max_artists=8)
    user = UserState(8)
    taste.learn(user, items, items.rows["calm"], 1.0, at=0.0)
    taste.learn(user, items, items.rows["loud"], -0.5, at=0.0)
    aurora = items.artist_rows["Aurora Fields"]
    ambient = items.genre_rows["ambient"]
    assert taste.artist_affinity(user, aurora, now=0.0) == pytest.approx(1.0)
    assert taste.genre_affinity(user, ambient, now=30 * DAY) == pytest.approx(0.5)
    assert taste.top_genres(user, items, 1, now=0.0) == [("ambient", pytest.approx(1.0))]
    assert taste.top_artists(user, items, 2, now=0.0)[-1] == ("Iron Vale", pytest.approx(-0.5))


def test_item_scores_rank_liked_over_disliked_and_unknown(items: ItemIndex) -> None:
    taste = TasteProfile(half_life=30 * DAY, max_genres=8, max_artists=8)
    user = UserState(8)
    for _ in range(3):
        taste.learn(user, items, items.rows["calm"], 1.0, at=0.0)
    taste.learn(user, items, items.rows["loud"], -1.0, at=0.0)
    rows = np.arange(len(items))
    scores = taste.scores(user, items, rows)
    calmer, loud, other, bare = (items.rows[i] for i in ("calmer", "loud", "other", "no-metadata"))
    assert scores[calmer] > scores[other] == 0.0 > scores[loud]
    assert scores[bare] == 0.0
    for row in rows.tolist():  # vectorised and scalar agree
        assert scores[row] == pytest.approx(taste.item_affinity(user, items, row), rel=1e-5)


def test_items_without_metadata_leave_the_profile_empty(items: ItemIndex) -> None:
    taste = TasteProfile(half_life=DAY, max_genres=4, max_artists=4)
    user = UserState(4)
    taste.learn(user, items, items.rows["no-metadata"], 1.0, at=0.0)
    assert not taste.has_profile(user)
    assert taste.scores(user, items, np.arange(len(items))).tolist() == [0.0] * len(items)


def test_profile_size_is_capped_keeping_the_strongest() -> None:
    from stream.models import CatalogItem

    index = ItemIndex()
    for n in range(20):
        index.upsert(CatalogItem(f"i{n}", "t", f"artist{n}", (f"genre{n}",), 1, 0.0))
    taste = TasteProfile(half_life=DAY, max_genres=3, max_artists=3)
    user = UserState(4)
    for n in range(20):
        taste.learn(user, index, n, 1.0 + n, at=0.0)
    assert len(user.artist_keys) == 3 and len(user.genre_keys) == 3
    assert {name for name, _ in taste.top_artists(user, index, 3, now=0.0)} == {
        "artist17",
        "artist18",
        "artist19",
    }


def test_rescaling_keeps_relative_values(items: ItemIndex) -> None:
    taste = TasteProfile(half_life=1.0, max_genres=4, max_artists=4)
    user = UserState(4)
    taste.learn(user, items, items.rows["calm"], 1.0, at=0.0)
    taste.learn(user, items, items.rows["loud"], 1.0, at=100.0)  # forces a rescale
    aurora = items.artist_rows["Aurora Fields"]
    iron = items.artist_rows["Iron Vale"]
    assert taste.artist_affinity(user, iron, now=100.0) == pytest.approx(1.0)
    assert taste.artist_affinity(user, aurora, now=100.0) == pytest.approx(2.0**-100, rel=1e-3)
