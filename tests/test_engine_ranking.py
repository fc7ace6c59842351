"""The fused Top picks kernel ranks as the step-by-step definition it replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.engine import (
    _ARTIST_CANDIDATES,
    _GENRE_CANDIDATES,
    _GENRE_CANDIDATES_DEPTH,
    _ITEMS_PER_ARTIST_CANDIDATE,
    _POPULAR_CANDIDATES,
)
from stream.engine.features import (
    ITEM_FEATURES,
    item_matrix_of,
    positive_seeds,
    recent_skip_share,
    seed_weights,
    user_context,
)
from stream.engine.kernels import (
    COOC,
    lookup,
    mf_top_k,
    top_k,
    top_picks_score,
    unseen_candidates,
)
from stream.engine.ranking import RankingCache
from stream.engine.state import ItemIndex, copied
from stream.models import CatalogItem
from stream.simulator import World, WorldConfig


@pytest.fixture(scope="module")
def trained() -> tuple[Engine, float]:
    world = World.generate(WorldConfig(n_users=120, n_items=400, seed=3))
    engine = Engine(EngineConfig(seed=3))
    for item in world.catalog:
        engine.upsert_item(item)
    events = list(world.events(6_000))
    for event in events:
        engine.learn(event)
    return engine, events[-1].timestamp + 60.0


def reference_ranking(engine: Engine, user_id: str, k: int, now: float) -> list[int]:
    """Top picks as the engine defined them before the fused kernel, one step at a time."""
    c = engine.config
    user = engine.users[user_id]
    _, mf_top = engine._mf_scores(user_id, user, max(k, c.rerank_pool))
    seeds = positive_seeds(user, c.cooc_window)
    cooc_rows, cooc_values = engine.cooccurrence.candidates(seed_weights(seeds), now=now)
    sources = [cooc_rows, np.asarray(engine.popular_rows[:_POPULAR_CANDIDATES], dtype=np.int64)]
    sources.append(mf_top)
    ranked = sorted(
        zip(user.artist_values, user.artist_keys, strict=True), key=lambda vk: (-vk[0], vk[1])
    )
    for value, artist in ranked[:_ARTIST_CANDIDATES]:
        if value > 0:
            tail = engine.items.artist_items[artist][-_ITEMS_PER_ARTIST_CANDIDATE:]
            sources.append(np.asarray(tail, dtype=np.int64))
    ranked = sorted(
        zip(user.genre_values, user.genre_keys, strict=True), key=lambda vk: (-vk[0], vk[1])
    )
    for value, genre in ranked[:_GENRE_CANDIDATES]:
        if value > 0 and genre < len(engine.popular_by_genre):
            sources.append(engine.popular_by_genre[genre][:_GENRE_CANDIDATES_DEPTH])
    rows = unseen_candidates(
        np.sort(np.concatenate(sources)), copied(user.seen, np.int32), engine.items.active
    )
    features = item_matrix_of(
        engine, user_id, user, rows, now, lookup(rows, cooc_rows, cooc_values)
    )
    common = user_context(user, now, None, from_list=True)
    common.update(seen=0.0, previous=0.0, recent_skips=recent_skip_share(user))
    common["mf_user"] = engine.factors.river.u_biases.get(user_id, 0.0)
    common["user_events"] = math.log1p(user.n_events)
    coefficients, intercept = engine.skip_model.linear_form(common, ITEM_FEATURES)
    score = top_picks_score(
        features,
        c.mf_blend,
        c.cooc_blend,
        c.taste_blend,
        c.popularity_blend,
        coefficients,
        intercept,
        c.skip_rerank_weight,
    )
    assert np.all(features[:, COOC] >= 0)
    return rows[np.lexsort((rows, -score))[:k]].tolist()


def test_rank_equals_the_step_by_step_definition(trained: tuple[Engine, float]) -> None:
    engine, now = trained
    users = [user_id for user_id, user in engine.users.items() if user.n_seen][:60]
    assert len(users) == 60
    for user_id in users:
        for k in (1, 10, 1_000):
            expected = [engine.items.ids[row] for row in reference_ranking(engine, user_id, k, now)]
            assert engine.rank(user_id, k, now=now) == expected


def test_best_seed_is_the_strongest_co_occurring_seed(trained: tuple[Engine, float]) -> None:
    engine, now = trained
    checked = 0
    for user_id in list(engine.users)[:40]:
        user = engine.users[user_id]
        if not user.n_seen:
            continue
        _, mf_top = engine._mf_scores(user_id, user, engine.config.rerank_pool)
        scored = engine._score(user_id, user, now, None, mf_top)
        seeds = [row for row, _, _ in positive_seeds(user, engine.config.cooc_window)]
        for row, best_seed in zip(scored.rows.tolist(), scored.best_seed.tolist(), strict=True):
            strengths = [engine.cooccurrence.strength(seed, row, now=now) for seed in seeds]
            if max(strengths, default=0.0) > 0:
                assert best_seed == seeds[int(np.argmax(strengths))]
                checked += 1
            else:
                assert best_seed == -1
    assert checked > 50


def test_mf_top_k_finishes_scores_and_selects_like_top_k() -> None:
    rng = np.random.default_rng(1)
    size, learned = 300, 250
    dots = rng.integers(0, 30, size=size).astype(np.float32)  # many ties
    offset = rng.normal(size=size).round(1).astype(np.float32)
    offset[rng.integers(0, size, size=20)] = -np.inf  # unlearned
    penalty = np.zeros(size, dtype=np.float32)
    penalty[rng.integers(0, size, size=10)] = -np.inf  # withdrawn
    seen = np.unique(rng.integers(0, size, size=30)).astype(np.int32)
    expected = dots + offset + penalty
    expected[learned:] = -np.inf
    expected[seen] = -np.inf
    for k in (0, 1, 7, 400):
        out = dots.copy()
        assert mf_top_k(out, offset, penalty, seen, learned, k).tolist() == (
            top_k(expected, k).tolist()
        )
        np.testing.assert_array_equal(out, expected)


def test_ranking_cache_follows_catalog_changes() -> None:
    items = ItemIndex()
    cache = RankingCache()
    for n in range(4):
        items.upsert(CatalogItem(f"t{n}", "T", "A" if n % 2 else "B", ("pop",), 1, 0.0))
    tails, sizes = cache.artist_tails(items, 3)
    assert tails[0, : sizes[0]].tolist() == [0, 2] and tails[1, : sizes[1]].tolist() == [1, 3]
    # A re-listing by another artist moves the item (as Engine.upsert_item reports it).
    items.upsert(CatalogItem("t0", "T", "A", ("pop",), 1, 0.0))
    cache.catalog_changed(1, 0)
    tails, sizes = cache.artist_tails(items, 3)
    assert tails[0, : sizes[0]].tolist() == [2] and tails[1, : sizes[1]].tolist() == [1, 3, 0]
    chart = [5, 4, 3]
    assert cache.popular(chart, 2).tolist() == [5, 4]
    assert cache.popular(chart, 2) is cache.popular(chart, 2)  # converted once per chart


def test_engine_upserts_keep_artist_candidates_fresh() -> None:
    engine = Engine(EngineConfig(seed=0))
    engine.upsert_item(CatalogItem("a", "A", "Aurora", ("ambient",), 1, 0.0))
    tails, sizes = engine._ranking.artist_tails(engine.items, 3)
    engine.upsert_item(CatalogItem("b", "B", "Aurora", ("ambient",), 1, 0.0))
    engine.upsert_item(CatalogItem("a", "A", "Vale", ("metal",), 1, 0.0))
    tails, sizes = engine._ranking.artist_tails(engine.items, 3)
    aurora, vale = engine.items.artist_rows["Aurora"], engine.items.artist_rows["Vale"]
    assert tails[aurora, : sizes[aurora]].tolist() == [1]
    assert tails[vale, : sizes[vale]].tolist() == [0]
    restored = Engine.restore(engine.snapshot())
    assert len(restored._ranking.stamps) == 0  # scratch space is not state


def test_neighbours_kernel_equals_cooccurrence_neighbours(trained: tuple[Engine, float]) -> None:
    engine, now = trained
    compared = 0
    for seed in range(len(engine.items)):
        k = engine.config.max_neighbours if seed % 2 else 5
        rows, scores = engine._neighbours(seed, k, now)
        expected = engine.cooccurrence.neighbours(seed, k, now=now)
        assert list(zip(rows.tolist(), scores.tolist(), strict=True)) == expected
        compared += bool(expected)
    assert compared > 100


def test_release_table_equals_the_numpy_definition(trained: tuple[Engine, float]) -> None:
    engine, now = trained
    window = engine.config.new_release_window
    candidates = engine._release_candidates()
    for user_id in list(engine.users)[:20]:
        user = engine.users[user_id]
        for at in (now, now - window / 2):
            rows, scores, affinity = engine._release_table(user, at)
            released = engine.items.released_at[candidates]
            with np.errstate(invalid="ignore"):
                keep = released <= at
                keep &= (released >= at - window) & engine.items.active[candidates]
            recent, released = candidates[keep], released[keep]
            taste = engine.taste.scores(user, engine.items, recent).astype(np.float64)
            score = taste + 0.1 * (1.0 - (at - released) / window)
            order = np.lexsort((recent, -score))[: len(rows)]
            assert len(rows) == min(len(recent), 300)
            assert rows.tolist() == recent[order].tolist()
            assert scores.tolist() == score[order].tolist()
            assert affinity.tolist() == taste[order].tolist()
