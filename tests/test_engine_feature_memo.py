"""The per-event feature memo shared by predict_skip and learn never changes a result."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from stream.engine import Engine, EngineConfig
from stream.models import Interaction
from stream.simulator import World, WorldConfig


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=40, n_items=200, seed=11))


@pytest.fixture(scope="module")
def events(world: World) -> list[Interaction]:
    return list(world.events(1_500))


def fresh(world: World, **config: object) -> Engine:
    engine = Engine(EngineConfig(seed=0).replace(**config))
    for item in world.catalog:
        engine.upsert_item(item)
    return engine


def assert_same_models(left: Engine, right: Engine, users: list[str], now: float) -> None:
    """Same skip model, same MF, same rankings (the memo is not part of the state)."""
    assert left.skip_model.classifier.weights == right.skip_model.classifier.weights
    assert dict(left.skip_model.scaler.means) == dict(right.skip_model.scaler.means)
    assert dict(left.skip_model.scaler.vars) == dict(right.skip_model.scaler.vars)
    assert np.array_equal(left.factors.item_factors, right.factors.item_factors)
    for user_id in users:
        assert left.rank(user_id, 10, now=now) == right.rank(user_id, 10, now=now)


@pytest.mark.parametrize("skip_learn_every", [1, 3])
def test_predict_then_learn_equals_learn_alone(
    world: World, events: list[Interaction], skip_learn_every: int
) -> None:
    with_predictions = fresh(world, skip_learn_every=skip_learn_every)
    learn_only = fresh(world, skip_learn_every=skip_learn_every)
    predictions = []
    for event in events:
        predictions.append(with_predictions.predict_skip(event))
        with_predictions.learn(event)
        learn_only.learn(event)
    users = sorted({event.user_id for event in events})[:10]
    assert_same_models(with_predictions, learn_only, users, events[-1].timestamp + 60.0)
    assert len(set(predictions)) > 10  # the skip model did learn something


def test_memoised_prediction_equals_a_fresh_computation(
    world: World, events: list[Interaction]
) -> None:
    engine = fresh(world)
    for event in events[:1_000]:
        engine.learn(event)
    for event in events[1_000:1_100]:
        memoised = engine.predict_skip(event)
        assert engine.predict_skip(event) == memoised  # served from the memo
        engine._features_for = None
        assert engine.predict_skip(event) == memoised  # recomputed
        engine.learn(event)


def test_memo_is_dropped_when_state_changes(world: World, events: list[Interaction]) -> None:
    engine = fresh(world)
    for event in events[:1_000]:
        engine.learn(event)
    event = events[1_000]
    before = engine.predict_skip(event)
    engine.learn(event)
    # The same event object again, now after learning it: a new prediction, not the memo.
    after = engine.predict_skip(event)
    engine._features_for = None
    assert engine.predict_skip(event) == after != before
    # A catalog change also invalidates it (the item's artist decides taste features).
    item = next(i for i in world.catalog if i.item_id == event.item_id)
    engine.predict_skip(event)
    engine.upsert_item(replace(item, artist="Somebody Else Entirely"))
    moved = engine.predict_skip(event)
    engine._features_for = None
    assert engine.predict_skip(event) == moved


def test_an_equal_but_distinct_event_object_is_recomputed(
    world: World, events: list[Interaction]
) -> None:
    engine = fresh(world)
    for event in events[:500]:
        engine.learn(event)
    event = events[500]
    engine.predict_skip(event)
    # Same event id, other context (six hours later): the memo is keyed by the object,
    # so it is not reused.
    twin = replace(event, timestamp=event.timestamp + 6 * 3_600.0)
    memoised = engine.predict_skip(twin)
    engine._features_for = None
    assert engine.predict_skip(twin) == memoised
    assert engine.predict_skip(twin) != engine.predict_skip(event)
