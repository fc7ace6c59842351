"""Baselines: popularity and naive River MF rank correctly, purely and reproducibly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.baselines import PopularityRecommender, RiverMFRecommender, top_k_indices
from stream.models import CatalogItem, EventType, Interaction

PLAY, SKIP, REPLAY = EventType.PLAY, EventType.SKIP, EventType.REPLAY
DAY = 86_400.0


def learn_all(model, rows, start: float = 1_700_000_000.0, step: float = 1.0):
    for n, (user, item, kind) in enumerate(rows):
        model.learn(Interaction(f"e{n}", user, item, kind, start + n * step))
    return model


def catalog_item(item_id: str) -> CatalogItem:
    return CatalogItem(item_id, item_id, "artist", ("rock",), 200_000, 0.0)


# A log where positive counts are: a=4 (3 plays + 1 replay), b=3, c=2, d=1, e=0 (skips only).
POPULARITY_LOG = [
    ("u1", "a", PLAY), ("u2", "a", PLAY), ("u3", "a", PLAY), ("u1", "a", REPLAY),
    ("u2", "b", PLAY), ("u3", "b", PLAY), ("u4", "b", PLAY),
    ("u4", "c", PLAY), ("u5", "c", PLAY),
    ("u5", "d", PLAY),
    ("u1", "e", SKIP), ("u2", "e", SKIP), ("u3", "e", SKIP), ("u4", "e", SKIP), ("u5", "e", SKIP),
]  # fmt: skip


# --------------------------------------------------------------------------- popularity


def test_popularity_returns_the_most_played_unseen_items():
    model = learn_all(PopularityRecommender(), POPULARITY_LOG)
    assert model.rank("stranger", 3, now=0.0) == ["a", "b", "c"]
    assert model.rank("u1", 3, now=0.0) == ["b", "c", "d"]  # a and e already met by u1
    assert model.rank("u4", 10, now=0.0) == ["a", "d"]  # skipped e is never offered again
    assert model.rank("u1", 0, now=0.0) == []


def test_popularity_ties_go_to_the_item_met_first_and_catalog_items_come_last():
    model = PopularityRecommender()
    model.upsert_item(catalog_item("new-release"))
    learn_all(model, [("u1", "y", PLAY), ("u2", "x", PLAY), ("u3", "z", SKIP)])
    assert model.rank("u9", 5, now=0.0) == ["y", "x", "new-release", "z"]


def test_popularity_with_a_half_life_follows_recent_plays():
    rows = [(f"old{n}", "old-hit", PLAY) for n in range(4)]
    rows += [("filler", f"f{n}", SKIP) for n in range(10)]
    rows += [(f"new{n}", "new-hit", PLAY) for n in range(2)]
    all_time = learn_all(PopularityRecommender(), rows, step=DAY)
    decayed = learn_all(PopularityRecommender(half_life=DAY), rows, step=DAY)
    assert all_time.rank("me", 2, now=0.0) == ["old-hit", "new-hit"]
    assert decayed.rank("me", 2, now=0.0) == ["new-hit", "old-hit"]


def test_popularity_decay_survives_long_logs():
    # 2000 half-lives: exp() would overflow without rebasing.
    rows = [("u1", "early", PLAY)] + [("u2", f"i{n}", SKIP) for n in range(1999)]
    rows += [("u3", "late", PLAY)]
    model = learn_all(PopularityRecommender(half_life=DAY), rows, step=DAY)
    assert model.rank("me", 2, now=0.0) == ["late", "early"]
    assert np.isfinite(model._items.values[: len(model._items)]).all()


def test_popularity_skip_prediction_is_the_smoothed_item_skip_rate():
    model = learn_all(PopularityRecommender(skip_prior_weight=0.0), POPULARITY_LOG)
    probe_e = Interaction("p", "u9", "e", PLAY, 0.0)
    probe_a = Interaction("p", "u9", "a", PLAY, 0.0)
    assert model.predict_skip(probe_e) == 1.0
    assert model.predict_skip(probe_a) == 0.0
    # Unknown item: the log's rate with add-one smoothing, (5 + 1) / (15 + 2).
    assert model.predict_skip(Interaction("p", "u9", "new", PLAY, 0.0)) == pytest.approx(6 / 17)


# --------------------------------------------------------------------------- river MF


def _river_log(n_events: int = 400, seed: int = 0) -> list[tuple[str, str, EventType]]:
    rng = np.random.default_rng(seed)
    return [
        (f"u{rng.integers(12)}", f"i{rng.integers(40)}", SKIP if rng.random() < 0.3 else PLAY)
        for _ in range(n_events)
    ]


def test_river_mf_never_returns_items_it_never_saw_nor_items_already_met():
    model = RiverMFRecommender()
    for item in ("catalog-only-1", "catalog-only-2"):
        model.upsert_item(catalog_item(item))
    rows = _river_log()
    learn_all(model, rows)
    learned_items = {item for _, item, _ in rows}
    for user in {user for user, _, _ in rows} | {"stranger"}:
        ranking = model.rank(user, 50, now=0.0)
        met = {item for who, item, _ in rows if who == user}
        assert set(ranking) == learned_items - met  # k is large enough for every candidate
        assert len(ranking) == len(set(ranking))


def test_river_mf_scores_agree_with_river_predict_one():
    model = learn_all(RiverMFRecommender(), _river_log())
    river = model._river
    ranking = model.rank("u3", 10, now=0.0)
    # predict_one on ids River knows creates nothing new; its order must match ours.
    predictions = [river.predict_one("u3", item) for item in ranking]
    assert predictions == sorted(predictions, reverse=True)
    for item, row in model._items.row_of.items():
        np.testing.assert_array_equal(model._items.values[row], river.i_latents[item])


def test_river_mf_rank_creates_no_latents_for_unknown_ids():
    model = learn_all(RiverMFRecommender(kind="funk"), _river_log())
    users_before = set(model._river.u_latents)
    model.rank("stranger", 10, now=0.0)
    model.predict_skip(Interaction("p", "stranger", "never-seen", PLAY, 0.0))
    assert set(model._river.u_latents) == users_before
    assert "never-seen" not in model._river.i_latents


@pytest.mark.parametrize("kind", ["biased", "funk"])
def test_river_mf_is_seeded_and_picklable(kind):
    rows = _river_log()
    first = learn_all(RiverMFRecommender(kind=kind, seed=7), rows)
    second = learn_all(RiverMFRecommender(kind=kind, seed=7), rows)
    other = learn_all(RiverMFRecommender(kind=kind, seed=8), rows)
    restored = pickle.loads(pickle.dumps(first))
    models = {"first": first, "second": second, "other": other, "restored": restored}
    rankings = {name: model.rank("u1", 10, now=0.0) for name, model in models.items()}
    assert rankings["first"] == rankings["second"] == rankings["restored"]
    assert rankings["first"] != rankings["other"]
    # The restored model keeps learning in step with River.
    learn_all(restored, [("u1", "fresh", PLAY)])
    assert "fresh" in restored.rank("u2", 50, now=0.0)


def test_river_mf_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        RiverMFRecommender(kind="deep")  # type: ignore[arg-type]


def test_popularity_is_picklable_and_inputs_stay_untouched():
    model = PopularityRecommender(half_life=DAY)
    event = Interaction("e", "u1", "a", PLAY, 5.0, ms_played=10, duration_ms=20)
    snapshot = (event.event_id, event.user_id, event.item_id, event.timestamp, event.ms_played)
    model.learn(event)
    assert snapshot == (
        event.event_id, event.user_id, event.item_id, event.timestamp, event.ms_played
    )  # fmt: skip
    restored = pickle.loads(pickle.dumps(model))
    assert restored.rank("u2", 5, now=0.0) == model.rank("u2", 5, now=0.0) == ["a"]


def test_arrays_grow_past_their_initial_size():
    rows = [(f"u{n % 50}", f"i{n}", PLAY) for n in range(3000)]
    for model in (PopularityRecommender(), RiverMFRecommender()):
        learn_all(model, rows)
        assert len(model.rank("newcomer", 3000, now=0.0)) == 3000


# --------------------------------------------------------------------------- top-k


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0]), max_size=30),
    st.integers(0, 35),
)
def test_top_k_indices_matches_a_full_sort(values, k):
    scores = np.array(values, dtype=float)
    expected = sorted(
        (position for position, value in enumerate(values) if value > -np.inf),
        key=lambda position: (-values[position], position),
    )[:k]
    assert top_k_indices(scores, k).tolist() == expected
