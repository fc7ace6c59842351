"""The scalar and vectorised feature paths agree (what models learn is what they are served)."""

from __future__ import annotations

import numpy as np
import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.features import (
    ITEM_FEATURES,
    item_columns,
    item_features,
    positive_seeds,
    seed_weights,
)
from stream.simulator import World, WorldConfig


@pytest.fixture(scope="module")
def trained() -> tuple[Engine, World]:
    world = World.generate(WorldConfig(n_users=40, n_items=150, seed=5))
    engine = Engine(EngineConfig(seed=1))
    for item in world.catalog:
        engine.upsert_item(item)
    for event in world.events(2_500):
        engine.learn(event)
    return engine, world


def test_item_columns_equal_item_features(trained: tuple[Engine, World]) -> None:
    engine, _ = trained
    now = max(u.last_event_at or 0.0 for u in engine.users.values()) + 60.0
    rows = np.arange(len(engine.items))
    for user_id in list(engine.users)[:8]:
        user = engine.users[user_id]
        seeds = seed_weights(positive_seeds(user, engine.config.cooc_window))
        cooc_rows, cooc_values = engine.cooccurrence.candidates(seeds, now=now)
        cooc = np.zeros(len(rows))
        cooc[cooc_rows] = cooc_values
        columns = item_columns(engine, user_id, user, rows, now, cooc)
        assert set(columns) == set(ITEM_FEATURES)
        for row in rows.tolist()[::7]:
            scalar = item_features(engine, user_id, user, row, now)
            for name in ITEM_FEATURES:
                assert columns[name][row] == pytest.approx(scalar[name], rel=1e-4, abs=1e-6), name


def test_features_change_with_what_the_user_did(trained: tuple[Engine, World]) -> None:
    engine, _ = trained
    user_id = max(engine.users, key=lambda u: engine.users[u].n_events)
    user = engine.users[user_id]
    seed = positive_seeds(user, 1)[0][0]
    now = (user.last_event_at or 0.0) + 1.0
    neighbour = engine.cooccurrence.neighbours(seed, 1, now=now)[0][0]
    features = item_features(engine, user_id, user, neighbour, now)
    assert features["cooc"] > 0
    artist = int(engine.items.artist_of[seed])
    assert features["popularity"] > 0
    assert item_features(engine, user_id, user, seed, now)["artist_signed"] != 0 or artist < 0
