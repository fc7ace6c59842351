"""Every model Encore ships, by name: for the contract test, evaluation and ablations.

``MODEL_FACTORIES`` builds recommenders (the Recommender protocol of
:mod:`stream.evaluation`: ``learn`` / ``rank`` / optional ``upsert_item`` and
``predict_skip``) from a seed: the engine, each of its sources alone, and the
evaluation baselines of :mod:`stream.engine.baselines` when that module is
present. ``COMPONENT_FACTORIES`` builds the engine's sub-models with the
engine's default hyperparameters.

>>> sorted(MODEL_FACTORIES)[:3]
['engine', 'engine-cooccurrence', 'engine-mf']
>>> model = MODEL_FACTORIES["engine-popularity"](3)
>>> model.seed
3
>>> params(COMPONENT_FACTORIES["skip-model"](0))
{'learning_rate': 0.01, 'l2': 0.0, 'form_every': 1}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from stream.engine.config import EngineConfig
from stream.engine.cooccurrence import Cooccurrence
from stream.engine.engine import Engine
from stream.engine.exploration import DiscoveryBandit
from stream.engine.factors import FactorModel
from stream.engine.popularity import Popularity
from stream.engine.single import SOURCES, SingleSourceRecommender
from stream.engine.skip_model import SkipModel
from stream.engine.taste import TasteProfile


def params(model: Any) -> dict[str, Any]:
    """Constructor arguments of ``model``, read back from the attributes of the same names.

    >>> params(TasteProfile(half_life=1.0, max_genres=2, max_artists=3))
    {'half_life': 1.0, 'max_genres': 2, 'max_artists': 3}
    """
    names = [name for name in inspect.signature(type(model).__init__).parameters if name != "self"]
    return {name: getattr(model, name) for name in names}


def clone(model: Any) -> Any:
    """A fresh, untrained model with the same hyperparameters."""
    return type(model)(**params(model))


def _engine(seed: int) -> Engine:
    return Engine(EngineConfig(seed=seed))


def _single(source: str) -> Callable[[int], SingleSourceRecommender]:
    def build(seed: int) -> SingleSourceRecommender:
        return SingleSourceRecommender(source, seed=seed)

    return build


def _components() -> dict[str, Callable[[int], Any]]:
    def popularity(seed: int) -> Popularity:
        c = EngineConfig(seed=seed)
        return Popularity(
            c.popularity_half_life,
            c.trending_half_life,
            c.trending_min_plays,
            c.hour_buckets,
            c.max_devices,
        )

    def cooccurrence(seed: int) -> Cooccurrence:
        c = EngineConfig(seed=seed)
        return Cooccurrence(
            c.cooc_half_life, c.cooc_window, c.cooc_session_gap, c.max_neighbours, c.cooc_damping
        )

    def factors(seed: int) -> FactorModel:
        c = EngineConfig(seed=seed)
        return FactorModel(
            c.n_factors,
            c.mf_learning_rate,
            c.mf_l2,
            c.mf_init_sigma,
            c.n_negatives,
            c.negative_every,
            seed,
        )

    def taste(seed: int) -> TasteProfile:
        c = EngineConfig(seed=seed)
        return TasteProfile(c.taste_half_life, c.max_taste_genres, c.max_taste_artists)

    def skip_model(seed: int) -> SkipModel:
        return SkipModel(EngineConfig(seed=seed).skip_learning_rate, 0.0)

    def explorer(seed: int) -> DiscoveryBandit:
        return DiscoveryBandit(EngineConfig(seed=seed).discover_arms, seed)

    return {
        "popularity": popularity,
        "cooccurrence": cooccurrence,
        "factors": factors,
        "taste": taste,
        "skip-model": skip_model,
        "discovery-bandit": explorer,
    }


def _baselines() -> dict[str, Callable[[int], Any]]:
    try:
        from stream.engine import baselines
    except ImportError:  # the evaluation engineer's module may not exist yet
        return {}
    found: dict[str, Callable[[int], Any]] = {}
    for name, attribute in (
        ("popularity", "PopularityRecommender"),
        ("river-mf", "RiverMFRecommender"),
    ):
        cls = getattr(baselines, attribute, None)
        if cls is not None:
            found[name] = lambda seed, cls=cls: cls(seed=seed)
    return found


#: Recommenders by name -> factory(seed).
MODEL_FACTORIES: dict[str, Callable[[int], Any]] = {
    "engine": _engine,
    **{f"engine-{source}": _single(source) for source in SOURCES},
    **_baselines(),
}

#: The engine's sub-models by name -> factory(seed), with the engine's default hyperparameters.
COMPONENT_FACTORIES: dict[str, Callable[[int], Any]] = _components()
