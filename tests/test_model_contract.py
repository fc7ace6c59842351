"""One contract for every model Encore ships (stream.engine.registry).

Recommenders (the engine, each of its sources alone, the evaluation baselines):
picklable before and after learning, re-created from their parameters with the
same parameters, identical under the same seed, robust to unseen users and
items, never mutating their input, and able to run a rank -> reward -> learn
loop that respects the ranking contract. Sub-models: picklable, re-creatable,
deterministic under a seed.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from stream.engine.registry import COMPONENT_FACTORIES, MODEL_FACTORIES, clone, params
from stream.engine.state import ItemIndex, UserState
from stream.models import EventType, Interaction, Source
from stream.simulator import World, WorldConfig

WORLD = World.generate(WorldConfig(n_users=25, n_items=80, seed=11))
EVENTS = list(WORLD.events(600))
NOW = EVENTS[-1].timestamp + 60.0
USERS = list(dict.fromkeys(e.user_id for e in EVENTS))


def trained(
    factory: Callable[[int], Any], seed: int = 0, events: list[Interaction] = EVENTS
) -> Any:
    model = factory(seed)
    if hasattr(model, "upsert_item"):
        for item in WORLD.catalog:
            model.upsert_item(item)
    for event in events:
        model.learn(event)
    return model


def rankings(model: Any) -> list[list[str]]:
    return [model.rank(user, 10, now=NOW) for user in [*USERS[:8], "nobody"]]


@pytest.fixture(params=sorted(MODEL_FACTORIES))
def factory(request: pytest.FixtureRequest) -> Callable[[int], Any]:
    return MODEL_FACTORIES[request.param]


def test_registry_lists_the_engine_its_sources_and_the_baselines() -> None:
    assert {"engine", "engine-mf", "engine-cooccurrence", "engine-taste"} <= set(MODEL_FACTORIES)
    assert {"popularity", "river-mf"} <= set(MODEL_FACTORIES)  # stream/engine/baselines.py


def test_picklable_before_and_after_learning(factory: Callable[[int], Any]) -> None:
    fresh = pickle.loads(pickle.dumps(factory(0)))
    assert fresh.rank("nobody", 5, now=NOW) == []
    model = trained(factory)
    restored = pickle.loads(pickle.dumps(model))
    assert rankings(restored) == rankings(model)
    extra = EVENTS[:50]
    for event in extra:
        model.learn(event)
        restored.learn(event)
    assert rankings(restored) == rankings(model)


def test_recreated_from_params_keeps_params(factory: Callable[[int], Any]) -> None:
    model = trained(factory, seed=3)
    again = clone(model)
    assert params(again) == params(model)
    assert rankings(trained(lambda seed: clone(model))) == rankings(trained(factory, seed=3))


def test_seeded_runs_are_identical(factory: Callable[[int], Any]) -> None:
    assert rankings(trained(factory, seed=5)) == rankings(trained(factory, seed=5))


def test_unseen_users_and_items_do_not_crash(factory: Callable[[int], Any]) -> None:
    model = trained(factory)
    cold = model.rank("never-seen-user", 10, now=NOW)
    assert len(cold) == len(set(cold)) <= 10
    odd = Interaction("odd-1", "never-seen-user", "never-seen-item", EventType.SKIP, NOW)
    if hasattr(model, "predict_skip"):
        assert 0.0 <= model.predict_skip(odd) <= 1.0
    model.learn(odd)
    model.learn(Interaction("odd-2", USERS[0], "another-new-item", EventType.PLAY, NOW + 1))
    assert "never-seen-item" not in model.rank("never-seen-user", 10, now=NOW + 2)
    assert "another-new-item" not in model.rank(USERS[0], 50, now=NOW + 2)


def test_learn_does_not_mutate_its_input(factory: Callable[[int], Any]) -> None:
    model = factory(0)
    for event in EVENTS[:200]:
        before = copy.deepcopy(event)
        if hasattr(model, "predict_skip"):
            model.predict_skip(event)
        model.learn(event)
        assert event == before


def test_rank_reward_learn_loop(factory: Callable[[int], Any]) -> None:
    model = trained(factory, events=EVENTS[:300])
    seen: dict[str, set[str]] = {}
    for event in EVENTS[:300]:
        seen.setdefault(event.user_id, set()).add(event.item_id)
    rng = np.random.default_rng(0)
    now = EVENTS[299].timestamp
    for step in range(60):
        user = USERS[step % len(USERS)]
        now += 30.0
        ranked = model.rank(user, 5, now=now)
        assert len(ranked) == len(set(ranked)) <= 5
        assert not seen.get(user, set()) & set(ranked)
        if not ranked:
            continue
        position = int(rng.integers(len(ranked)))
        liked = bool(rng.random() < 0.6)
        reward = Interaction(
            f"loop-{step}",
            user,
            ranked[position],
            EventType.PLAY if liked else EventType.SKIP,
            now,
            ms_played=180_000 if liked else 5_000,
            duration_ms=200_000,
            source=Source(f"list-{step}", "top-picks", position),
        )
        model.learn(reward)
        seen.setdefault(user, set()).add(ranked[position])


# ------------------------------------------------------------------ sub-models


def drive(component: Any, seed: int) -> Any:
    """Feed a sub-model a deterministic little stream through its own API."""
    rng = np.random.default_rng(seed)
    items = ItemIndex()
    for item in WORLD.catalog[:40]:
        items.upsert(item)
    user = UserState(16)
    name = type(component).__name__
    for step in range(150):
        row = int(rng.integers(40))
        weight = float(rng.choice([1.0, 0.6, -1.0]))
        at = 1_000.0 + 60.0 * step
        if name == "Popularity":
            component.learn(row, positive=weight > 0, at=at, device="mobile")
        elif name == "Cooccurrence":
            component.learn(row, weight, at=at, previous=user.newest_first())
        elif name == "FactorModel":
            component.learn(f"u{step % 4}", row, weight)
        elif name == "TasteProfile":
            component.learn(user, items, row, weight, at=at)
        elif name == "SkipModel":
            component.learn({"w": weight, "r": float(row)}, label=weight < 0)
        elif name == "DiscoveryBandit":
            arm = component.choose(list(component.arms))
            component.reward(arm, played=weight > 0)
        user.remember(row, weight, at)
    return component


def observe(component: Any) -> Any:
    name = type(component).__name__
    if name == "Popularity":
        return component.top_popular(10, now=20_000.0), component.top_trending(5, now=20_000.0)
    if name == "Cooccurrence":
        return [component.neighbours(r, 5, now=20_000.0) for r in range(40)]
    if name == "FactorModel":
        scores = component.scores("u1", 40)
        return None if scores is None else scores.tolist()
    if name == "SkipModel":
        return component.predict({"w": 1.0, "r": 3.0})
    if name == "DiscoveryBandit":
        return component.expected_rewards()
    return name


@pytest.fixture(params=sorted(COMPONENT_FACTORIES))
def component_factory(request: pytest.FixtureRequest) -> Callable[[int], Any]:
    return COMPONENT_FACTORIES[request.param]


def test_components_pickle_recreate_and_repeat(component_factory: Callable[[int], Any]) -> None:
    fresh = component_factory(2)
    pickle.loads(pickle.dumps(fresh))
    assert params(clone(fresh)) == params(fresh)
    first = drive(component_factory(2), seed=1)
    second = drive(component_factory(2), seed=1)
    assert observe(first) == observe(second)
    restored = pickle.loads(pickle.dumps(first))
    assert observe(restored) == observe(first)
