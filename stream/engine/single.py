"""One sub-model of the engine on its own, behind the evaluation's Recommender protocol.

Useful for ablations (how much does each source contribute?) and for the model
contract test, which runs every shipped model through the same checks.

>>> from stream.models import EventType, Interaction
>>> model = SingleSourceRecommender("cooccurrence", seed=0)
>>> for n, user in enumerate(["ann", "bob"]):
...     model.learn(Interaction(f"{user}1", user, "a", EventType.PLAY, 10.0 * n))
...     model.learn(Interaction(f"{user}2", user, "b", EventType.PLAY, 10.0 * n + 1))
>>> model.learn(Interaction("cat1", "cat", "a", EventType.PLAY, 30.0))
>>> model.rank("cat", 3, now=31.0)
['b']
"""

from __future__ import annotations

from typing import Final

import numpy as np

from stream.engine.config import EngineConfig
from stream.engine.cooccurrence import Cooccurrence
from stream.engine.factors import FactorModel
from stream.engine.popularity import Popularity, top_rows
from stream.engine.signals import event_weight
from stream.engine.state import ItemIndex, UserState
from stream.engine.taste import TasteProfile
from stream.models import CatalogItem, EventType, Interaction

SOURCES: Final = ("popularity", "cooccurrence", "mf", "taste")


class SingleSourceRecommender:
    """Rank never-interacted items with one sub-model of the engine.

    Parameters
    ----------
    source
        One of ``"popularity"`` (decayed), ``"cooccurrence"`` (neighbours of the
        user's latest positive events), ``"mf"`` (River BiasedMF with sampled
        negatives) or ``"taste"`` (genre / artist affinity; needs a catalog).
    seed
        Random seed (used by ``"mf"``).

    Notes
    -----
    Hyperparameters come from ``EngineConfig(seed=seed)``, the engine's defaults.
    """

    def __init__(self, source: str, seed: int = 0) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
        self.source = source
        self.seed = seed
        config = self.config = EngineConfig(seed=seed)
        self.items = ItemIndex()
        self.users: dict[str, UserState] = {}
        self.popularity = Popularity(
            config.popularity_half_life,
            config.trending_half_life,
            config.trending_min_plays,
            config.hour_buckets,
            config.max_devices,
        )
        self.model: Cooccurrence | FactorModel | TasteProfile | None = None
        if source == "cooccurrence":
            self.model = Cooccurrence(
                config.cooc_half_life,
                config.cooc_window,
                config.cooc_session_gap,
                config.max_neighbours,
                config.cooc_damping,
            )
        elif source == "mf":
            self.model = FactorModel(
                config.n_factors,
                config.mf_learning_rate,
                config.mf_l2,
                config.mf_init_sigma,
                config.n_negatives,
                config.negative_every,
                seed,
            )
        elif source == "taste":
            self.model = TasteProfile(
                config.taste_half_life, config.max_taste_genres, config.max_taste_artists
            )

    def __repr__(self) -> str:
        return f"SingleSourceRecommender(source={self.source!r}, seed={self.seed})"

    def upsert_item(self, item: CatalogItem) -> None:
        self.items.upsert(item)

    def learn(self, event: Interaction) -> None:
        row = self.items.add(event.item_id)
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = UserState(self.config.history_size)
        weight = event_weight(event, self.config, self.items.catalog_duration(row))
        positive = event.type is not EventType.SKIP
        self.popularity.learn(row, positive=positive, at=event.timestamp, device=event.device)
        model = self.model
        if isinstance(model, Cooccurrence) and positive:
            model.learn(row, weight, at=event.timestamp, previous=user.newest_first())
        elif isinstance(model, FactorModel):
            model.learn(event.user_id, row, weight, may_sample=not user.has_seen(row))
        elif isinstance(model, TasteProfile):
            model.learn(user, self.items, row, weight, at=event.timestamp)
        user.remember(row, weight, event.timestamp)

    def _scores(self, user_id: str, user: UserState | None, now: float) -> np.ndarray:
        size = len(self.items)
        model = self.model
        scores = np.full(size, -np.inf)
        if isinstance(model, FactorModel):
            mf = model.scores(user_id, size)
            if mf is not None:
                scores = mf.astype(np.float64)
        elif isinstance(model, Cooccurrence) and user is not None:
            seeds = []
            for row, weight, _ in user.newest_first():
                if weight > 0 and len(seeds) < self.config.cooc_window:
                    seeds.append((row, weight / (1.0 + len(seeds))))
            rows, values = model.candidates(seeds, now=now)
            scores[rows] = values
        elif isinstance(model, TasteProfile) and user is not None:
            taste = model.scores(user, self.items, np.arange(size)).astype(np.float64)
            scores = np.where(taste > 0, taste, -np.inf)
        else:
            scores = self.popularity.popularity_vector(size, now=now)
            scores[scores <= 0] = -np.inf
        return scores

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
        """Top-``k`` never-interacted items by this source's score, best first.

        Falls back to decayed popularity when the source has nothing for the user.
        """
        user = self.users.get(user_id)
        scores = self._scores(user_id, user, now)
        if user is not None:
            scores[user.seen_rows()] = -np.inf
        if not np.isfinite(scores).any():
            # Nothing from this source (e.g. an unknown user): the popular chart instead.
            scores = self.popularity.popularity_vector(len(self.items), now=now)
            scores[scores <= 0] = -np.inf
            if user is not None:
                scores[user.seen_rows()] = -np.inf
        return [self.items.ids[row] for row in top_rows(scores, k).tolist()]
