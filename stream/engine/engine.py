"""The recommender engine: learns from every event, answers with rows of reasons.

Pure Python + numpy + River, no Faust: the agents call :meth:`Engine.learn` per
event and :meth:`Engine.recommend` when a user's list is due; offline evaluation
calls :meth:`Engine.rank` and :meth:`Engine.predict_skip` on the same code.

Everything that depends on time uses event time (the event's timestamp or the
caller's ``now``), never the wall clock, so a replay of the same events with the
same seed reproduces the same state and the same lists.

>>> from stream.models import CatalogItem, EventType, Interaction
>>> engine = Engine(EngineConfig(seed=0))
>>> engine.upsert_item(CatalogItem("t1", "Northern Lights", "Aurora Fields", ("ambient",),
...                                200_000, 0.0))
>>> engine.upsert_item(CatalogItem("t2", "Slow Tide", "Aurora Fields", ("ambient",),
...                                200_000, 0.0))
>>> for n, user in enumerate(["ann", "bob", "cat"]):
...     engine.learn(Interaction(f"{user}-1", user, "t1", EventType.PLAY, 100.0 + n,
...                              ms_played=200_000))
...     engine.learn(Interaction(f"{user}-2", user, "t2", EventType.PLAY, 200.0 + n,
...                              ms_played=200_000))
>>> engine.learn(Interaction("dan-1", "dan", "t1", EventType.PLAY, 300.0, ms_played=200_000))
>>> engine.rank("dan", 5, now=400.0)
['t2']
>>> engine.user_counts("dan")
{'play': 1, 'skip': 0, 'replay': 0}
>>> lists = engine.recommend("dan", now=400.0)
>>> lists.based_on_events, lists.last_event_id, [row.row_id for row in lists.rows]
(1, 'dan-1', ['top-picks'])
>>> lists.rows[0].items[0].reason
'Often played with Northern Lights'
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from typing import Final

import numpy as np

from stream.engine.config import EngineConfig
from stream.engine.cooccurrence import Cooccurrence
from stream.engine.exploration import DiscoveryBandit
from stream.engine.factors import FactorModel
from stream.engine.popularity import Popularity, top_rows
from stream.engine.signals import (
    context_features,
    event_weight,
    hour_bucket,
    normalise_device,
)
from stream.engine.skip_model import SkipModel
from stream.engine.state import ItemIndex, UserState
from stream.engine.taste import TasteProfile
from stream.models import (
    CatalogItem,
    EventType,
    Interaction,
    RecommendationList,
    RecommendedItem,
    Row,
)

SNAPSHOT_VERSION: Final = 1
TOP_PICKS: Final = "top-picks"
BECAUSE_PREFIX: Final = "because-you-played:"
DISCOVER: Final = "discover"
NEW_RELEASES: Final = "new-releases"
TRENDING: Final = "trending"

#: Global rankings are refreshed at most this often (events) even when event time stands still.
_REFRESH_MAX_EVENTS: Final = 5_000
#: ... and not more often than this (events), however fast event time moves.
_REFRESH_MIN_EVENTS: Final = 100
_CACHED_TRENDING: Final = 200
_CACHED_POPULAR: Final = 1_000
_LONG_TAIL_START: Final = 50
_HOUR_NAMES: Final = ("at night", "in the morning", "in the afternoon", "in the evening")


class Engine:
    """Online recommender: MF + co-occurrence + popularity + taste + skip model + bandit.

    Parameters
    ----------
    config
        Hyperparameters; ``EngineConfig()`` when omitted.

    Notes
    -----
    Not thread-safe: one engine per worker, fed in event-time order per user.
    :meth:`rank` is a pure query; :meth:`recommend` is not (it records which
    exploration arm filled each Discover slot and advances the bandit's sampler).
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = EngineConfig() if config is None else config
        c = self.config
        self.items = ItemIndex()
        self.users: dict[str, UserState] = {}
        self.popularity = Popularity(
            half_life=c.popularity_half_life,
            trending_half_life=c.trending_half_life,
            trending_min_plays=c.trending_min_plays,
            hour_buckets=c.hour_buckets,
            max_devices=c.max_devices,
        )
        self.cooccurrence = Cooccurrence(
            half_life=c.cooc_half_life,
            window=c.cooc_window,
            session_gap=c.cooc_session_gap,
            max_neighbours=c.max_neighbours,
            damping=c.cooc_damping,
        )
        self.factors = FactorModel(
            n_factors=c.n_factors,
            learning_rate=c.mf_learning_rate,
            l2=c.mf_l2,
            init_sigma=c.mf_init_sigma,
            n_negatives=c.n_negatives,
            negative_every=c.negative_every,
            seed=c.seed,
        )
        self.taste = TasteProfile(
            half_life=c.taste_half_life,
            max_genres=c.max_taste_genres,
            max_artists=c.max_taste_artists,
        )
        self.skip_model = SkipModel(learning_rate=c.skip_learning_rate, l2=0.0)
        self.explorer = DiscoveryBandit(arms=c.discover_arms, seed=c.seed)
        self.n_events = 0
        self.n_lists = 0
        # Global rankings, refreshed from learn() only, so queries stay pure and replays agree.
        self.trending_rows: list[int] = []
        self.popular_rows: list[int] = []
        self.popularity_score = np.zeros(0, dtype=np.float32)
        self.refreshed_at: float | None = None
        self.events_since_refresh = 0
        self._features_for: tuple[str, dict[str, float]] | None = None

    # ================================================================== catalog
    def upsert_item(self, item: CatalogItem) -> None:
        """Add or update an item's catalog metadata (a removed item comes back)."""
        self.items.upsert(item)

    def remove_item(self, item_id: str) -> None:
        """Catalog tombstone: the item is never recommended again (until re-upserted)."""
        self.items.remove(item_id)

    # ================================================================== learning
    def _user(self, user_id: str) -> UserState:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserState.empty(self.config.history_size)
        return user

    def learn(self, event: Interaction) -> None:
        """Update every sub-model with one event (in event-time order per user).

        The event is not modified. The skip model learns from the features the
        event had *before* this update (the same ones :meth:`predict_skip` saw).
        """
        c = self.config
        row = self.items.add(event.item_id)
        user = self._user(event.user_id)
        at = event.timestamp
        weight = event_weight(event, c, self.items.catalog_duration(row))
        is_skip = event.type is EventType.SKIP

        features = self._skip_features(event, user, row)
        self.skip_model.learn(features, skipped=is_skip)

        source = event.source
        if source is not None and source.row == DISCOVER:
            arm = user.discover_arms.pop(row, None)
            if arm is not None:
                self.explorer.reward(arm, played=not is_skip)

        self.factors.learn(event.user_id, row, weight)
        self.popularity.learn(row, positive=not is_skip, at=at, device=event.device)
        if not is_skip:
            self.cooccurrence.learn(row, weight, at=at, previous=user.recent())
        if self.items.catalog[row] is not None:
            self.taste.learn(user, self.items, row, weight, at=at)

        user.remember(row, weight, at)
        if is_skip:
            user.skips += 1
        elif event.type is EventType.REPLAY:
            user.replays += 1
        else:
            user.plays += 1
        user.last_event_id = event.event_id
        user.last_event_at = at if user.last_event_at is None else max(user.last_event_at, at)
        self.n_events += 1
        self.events_since_refresh += 1
        self._maybe_refresh(at)

    def _maybe_refresh(self, at: float) -> None:
        due_by_time = (
            self.refreshed_at is None or at - self.refreshed_at >= self.config.trending_refresh
        )
        if (
            (due_by_time and self.events_since_refresh >= _REFRESH_MIN_EVENTS)
            or (self.events_since_refresh >= _REFRESH_MAX_EVENTS)
            or self.refreshed_at is None
        ):
            self.refresh(now=at)

    def refresh(self, *, now: float) -> None:
        """Recompute the cached global rankings (trending, popular) at event time ``now``.

        Called from :meth:`learn` every few minutes of event time; call it yourself
        after bulk changes if you need fresh charts at once.
        """
        size = len(self.items)
        self.trending_rows = self.popularity.top_trending(_CACHED_TRENDING, now=now)
        self.popular_rows = self.popularity.top_popular(_CACHED_POPULAR, now=now)
        plays = self.popularity.popularity_vector(size, now=now)
        top = float(plays.max()) if size else 0.0
        self.popularity_score = (np.log1p(plays) / math.log1p(max(top, 1.0))).astype(np.float32)
        self.refreshed_at = now
        self.events_since_refresh = 0

    # ================================================================== skip model
    def _skip_features(self, event: Interaction, user: UserState, row: int) -> dict[str, float]:
        cached = self._features_for
        if cached is not None and cached[0] == event.event_id:
            return cached[1]
        now = event.timestamp
        features = context_features(now, event.device)
        features.update(self._item_features(event.user_id, user, row, now))
        features["from_list"] = 1.0 if event.source is not None else 0.0
        self._features_for = (event.event_id, features)
        return features

    def _item_features(
        self, user_id: str, user: UserState, row: int, now: float
    ) -> dict[str, float]:
        popularity = self.popularity
        n_events = user.n_events
        cooc = 0.0
        for seed, seed_weight, _ in self._recent_positive_seeds(user, 3):
            cooc += self.cooccurrence.strength(seed, row, now=now) * seed_weight
        recent = user.recent()
        last_weight = recent[-1][1] if recent else 0.0
        return {
            "mf": self.factors.predict(user_id, row),
            "taste": self.taste.item_affinity(user, self.items, row, now=now),
            "popularity": math.log1p(popularity.play_count(row, now=now)),
            "recent_plays": math.log1p(popularity.recent_play_count(row, now=now)),
            "item_skip_rate": popularity.skip_rate(row, now=now),
            "cooc": math.log1p(cooc),
            "seen": 1.0 if user.has_seen(row) else 0.0,
            "user_skip_rate": (user.skips + 1.0) / (n_events + 2.0),
            "user_events": math.log1p(n_events),
            "last_weight": last_weight,
        }

    def predict_skip(self, event: Interaction) -> float:
        """P(skip) for ``event`` from the contextual skip model, before learning it.

        Pure apart from a one-entry memo of the event's features, which
        :meth:`learn` reuses when it is called next with the same event.
        """
        user = self.users.get(event.user_id)
        if user is None:
            user = UserState.empty(1)
        row = self.items.row(event.item_id)
        if row is None:
            features = context_features(event.timestamp, event.device)
            features["from_list"] = 1.0 if event.source is not None else 0.0
            return self.skip_model.predict(features)
        return self.skip_model.predict(self._skip_features(event, user, row))

    # ================================================================== queries
    def known_user(self, user_id: str) -> bool:
        return user_id in self.users

    def user_counts(self, user_id: str) -> dict[str, int] | None:
        """Exact event counts of a user, ``None`` for an unknown user."""
        user = self.users.get(user_id)
        if user is None:
            return None
        return {"play": user.plays, "skip": user.skips, "replay": user.replays}

    def forget_user(self, user_id: str) -> bool:
        """Remove everything kept about a user (history, taste, latent factors).

        Aggregate item statistics the user contributed to (popularity,
        co-occurrence) are not per-user data and stay.
        """
        found = self.users.pop(user_id, None) is not None
        found = self.factors.forget_user(user_id) or found
        return found

    def top_genres(self, user_id: str, k: int, *, now: float) -> list[tuple[str, float]]:
        """The user's strongest genre affinities (for the profile API)."""
        user = self.users.get(user_id)
        return [] if user is None else self.taste.top_genres(user, self.items, k, now=now)

    def top_artists(self, user_id: str, k: int, *, now: float) -> list[tuple[str, float]]:
        """The user's strongest artist affinities (for the profile API)."""
        user = self.users.get(user_id)
        return [] if user is None else self.taste.top_artists(user, self.items, k, now=now)

    def _recent_positive_seeds(
        self, user: UserState, limit: int
    ) -> Iterator[tuple[int, float, float]]:
        """The user's latest distinct positive events, newest first, as (row, weight, time)."""
        found: set[int] = set()
        for row, weight, at in reversed(user.recent()):
            if weight > 0 and row not in found:
                found.add(row)
                yield row, weight, at
                if len(found) >= limit:
                    return

    def _recently_skipped(self, user: UserState, now: float) -> set[int]:
        window = self.config.skip_exclusion_window
        return {row for row, weight, at in user.recent() if weight < 0 and now - at <= window}

    def _blended_scores(
        self, user_id: str, user: UserState, now: float
    ) -> tuple[np.ndarray, dict[int, float], np.ndarray | None, np.ndarray]:
        """Top picks score per row (-inf = not recommendable), plus its ingredients."""
        c = self.config
        size = len(self.items)
        scores = np.zeros(size, dtype=np.float32)
        mf = self.factors.scores(user_id, size)
        if mf is not None:
            learned = np.isfinite(mf)
            if learned.any():
                floor = float(mf[learned].min())
                mf = np.where(learned, mf, floor)
            scores += c.mf_blend * mf
        cooc = self.cooccurrence.candidates(
            (
                (row, weight / (1.0 + rank))
                for rank, (row, weight, _) in enumerate(
                    self._recent_positive_seeds(user, c.cooc_window)
                )
            ),
            now=now,
        )
        if cooc:
            top = max(cooc.values())
            if top > 0:
                rows = np.fromiter(cooc.keys(), dtype=np.int64, count=len(cooc))
                values = np.fromiter(cooc.values(), dtype=np.float32, count=len(cooc))
                scores[rows] += c.cooc_blend * values / top
        taste = self.taste.scores(user, self.items, size, now=now)
        if user.artist_taste:
            scores += c.taste_blend * taste
        popularity = self.popularity_score
        n = min(size, len(popularity))
        scores[:n] += c.popularity_blend * popularity[:n]
        scores[~self.items.active[:size]] = -np.inf
        scores[user.seen_rows()] = -np.inf
        return scores, cooc, mf, taste

    def _rerank(
        self,
        user_id: str,
        user: UserState,
        candidates: np.ndarray,
        blended: np.ndarray,
        now: float,
        device: str | None,
    ) -> np.ndarray:
        """Blend P(play-through) from the skip model into candidates' scores."""
        c = self.config
        if not c.skip_rerank_weight or not self.skip_model.n_learned or not len(candidates):
            return blended[candidates]
        popularity = self.popularity
        pop = popularity.plays.raw(len(self.items))[candidates] * popularity.plays.scale(now)
        recent = popularity.recent_plays.raw(len(self.items))[candidates] * (
            popularity.recent_plays.scale(now)
        )
        skips = popularity.skips.raw(len(self.items))[candidates] * popularity.skips.scale(now)
        cooc = np.zeros(len(candidates))
        for seed, seed_weight, _ in self._recent_positive_seeds(user, 3):
            neighbours = self.cooccurrence.pairs.get(seed)
            if neighbours:
                for i, row in enumerate(candidates.tolist()):
                    if row in neighbours:
                        cooc[i] += self.cooccurrence.strength(seed, row, now=now) * seed_weight
        user_vector = self.factors.user_vector(user_id)
        if user_vector is None:
            mf = np.zeros(len(candidates))
        else:
            learned = self.factors.learned
            rows_ok = candidates < len(learned)
            mf = np.zeros(len(candidates))
            ok = candidates[rows_ok]
            ok_learned = learned[ok]
            values = self.factors.item_factors[ok] @ user_vector + self.factors.item_bias[ok]
            values = (
                values
                + float(self.factors.river.global_mean.get())
                + float(self.factors.river.u_biases.get(user_id, 0.0))
            )
            mf[rows_ok] = np.where(ok_learned, values, 0.0)
        taste = np.array(
            [self.taste.item_affinity(user, self.items, int(r), now=now) for r in candidates]
        )
        recent_events = user.recent()
        common = context_features(now, device)
        common.update(
            {
                "from_list": 1.0,
                "seen": 0.0,
                "user_skip_rate": (user.skips + 1.0) / (user.n_events + 2.0),
                "user_events": math.log1p(user.n_events),
                "last_weight": recent_events[-1][1] if recent_events else 0.0,
            }
        )
        columns = {
            "mf": mf,
            "taste": taste,
            "popularity": np.log1p(pop),
            "recent_plays": np.log1p(recent),
            "item_skip_rate": (skips + 1.0) / (skips + pop + 2.0),
            "cooc": np.log1p(cooc),
        }
        p_skip = self.skip_model.predict_many(common, columns)
        return blended[candidates] + c.skip_rerank_weight * (1.0 - p_skip)

    def _cold_ranking(self, now: float, device: str | None, exclude: set[int]) -> list[int]:
        size = len(self.items)
        scores = self.popularity.context_vector(size, now=now, device=device)
        scores = scores.astype(np.float64)
        scores[scores <= 0] = -np.inf
        scores[~self.items.active[:size]] = -np.inf
        if exclude:
            scores[list(exclude)] = -np.inf
        return top_rows(scores, 500).tolist()

    def _top_picks(
        self, user_id: str, user: UserState, k: int, now: float, device: str | None
    ) -> tuple[list[tuple[int, float]], dict[int, float], np.ndarray]:
        c = self.config
        blended, cooc, _, taste = self._blended_scores(user_id, user, now)
        pool = top_rows(blended, max(k, c.rerank_pool))
        final = self._rerank(user_id, user, pool, blended, now, device)
        order = np.lexsort((pool, -final))
        return [(int(pool[i]), float(final[i])) for i in order], cooc, taste

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
        """Top-``k`` item ids the user has never interacted with, best first.

        A pure query (the Recommender protocol of :mod:`stream.evaluation`).
        An unknown user gets the most popular items.
        """
        user = self.users.get(user_id)
        if user is None or not user.n_seen:
            return [self.items.ids[row] for row in self._cold_ranking(now, None, set())[:k]]
        picks, _, _ = self._top_picks(user_id, user, k, now, None)
        return [self.items.ids[row] for row, _ in picks[:k]]

    # ================================================================== rows
    def recommend(
        self,
        user_id: str,
        *,
        now: float,
        device: str | None = None,
        country: str | None = None,
    ) -> RecommendationList:
        """Everything this user should see now: rows of items with scores and reasons.

        Parameters
        ----------
        user_id
            Who the list is for (unknown users get a cold-start list).
        now
            Event time the list is generated for (used for decay and context).
        device, country
            Request context; the device selects context-aware popularity.
            ``country`` is accepted for the API and not used yet.

        Returns
        -------
        RecommendationList
            Rows in display order; empty rows are left out; no item appears twice.
        """
        c = self.config
        user = self.users.get(user_id)
        builder = _RowBuilder(self.items, c.row_size, c.max_per_artist)
        if user is not None:
            builder.excluded |= self._recently_skipped(user, now)
            builder.excluded.update(int(r) for r in user.seen_rows())
        rows: list[Row] = []
        personal = user is not None and user.n_seen > 0
        if personal:
            assert user is not None
            picks, cooc, taste = self._top_picks(user_id, user, c.row_size * 3, now, device)
            rows.append(
                builder.row(
                    TOP_PICKS,
                    "Top picks for you",
                    (
                        (row, score, self._pick_reason(user, row, cooc, taste, now))
                        for row, score in picks
                    ),
                )
            )
            rows.extend(self._because_rows(user, builder, now))
        else:
            popular = self._cold_ranking(now, device, builder.excluded)
            reason = self._context_reason(now, device)
            rows.append(
                builder.row(
                    TOP_PICKS,
                    "Popular right now",
                    ((row, 1.0 / (1.0 + i), reason) for i, row in enumerate(popular)),
                )
            )
        rows.append(self._discover_row(user_id, user, builder, now))
        rows.append(self._new_releases_row(user, builder, now))
        rows.append(self._trending_row(user, builder, now))
        self.n_lists += 1
        return RecommendationList(
            user_id=user_id,
            list_id=f"{user_id}:{int(now * 1000)}:{self.n_lists}",
            generated_at=now,
            rows=tuple(row for row in rows if row.items),
            based_on_events=0 if user is None else user.n_events,
            last_event_id=None if user is None else user.last_event_id,
            last_event_at=None if user is None else user.last_event_at,
        )

    # ------------------------------------------------------------------ reasons
    def _pick_reason(
        self, user: UserState, row: int, cooc: dict[int, float], taste: np.ndarray, now: float
    ) -> str:
        if row in cooc:
            best_seed = None
            best = 0.0
            for seed, _, _ in self._recent_positive_seeds(user, self.config.cooc_window):
                strength = self.cooccurrence.strength(seed, row, now=now)
                if strength > best:
                    best, best_seed = strength, seed
            if best_seed is not None:
                return f"Often played with {self.items.label(best_seed)}"
        if row < len(taste) and taste[row] > 0:
            return self._taste_reason(user, row, now)
        return "Listeners with similar taste play this"

    def _taste_reason(self, user: UserState, row: int, now: float) -> str:
        artist = int(self.items.artist_of[row])
        if artist >= 0 and self.taste.artist_affinity(user, artist, now=now) > 0:
            return f"Because you listen to {self.items.artists[artist]}"
        best_genre = None
        best = 0.0
        for genre in self.items.genres_of[row]:
            if genre >= 0:
                value = self.taste.genre_affinity(user, int(genre), now=now)
                if value > best:
                    best, best_genre = value, int(genre)
        if best_genre is not None:
            return f"Because you like {self.items.genres[best_genre]}"
        return "Matches your taste"

    def _context_reason(self, now: float, device: str | None) -> str:
        when = _HOUR_NAMES[hour_bucket(now, 4)]
        name = normalise_device(device)
        if name == "unknown":
            return f"Popular {when}"
        return f"Popular on {name} {when}"

    # ------------------------------------------------------------------ rows
    def _because_rows(self, user: UserState, builder: _RowBuilder, now: float) -> list[Row]:
        c = self.config
        rows = []
        for seed, weight, _ in self._recent_positive_seeds(user, c.history_size):
            if len(rows) >= c.because_rows:
                break
            if weight < c.strong_play_weight:
                continue
            neighbours = self.cooccurrence.neighbours(seed, c.max_neighbours, now=now)
            if not neighbours:
                continue
            label = self.items.label(seed)
            row = builder.row(
                f"{BECAUSE_PREFIX}{self.items.ids[seed]}",
                f"Because you played {label}",
                ((other, score, f"Often played with {label}") for other, score in neighbours),
            )
            if row.items:
                rows.append(row)
        return rows

    def _discover_candidates(
        self, user_id: str, user: UserState | None, now: float
    ) -> dict[str, Iterator[tuple[int, float, str]]]:
        """Ordered candidate streams per exploration arm: (row, score, reason)."""
        c = self.config
        size = len(self.items)
        sources: dict[str, Iterator[tuple[int, float, str]]] = {}
        mf = None if user is None else self.factors.scores(user_id, size)
        if "mf" in c.discover_arms and mf is not None:
            # Deeper in the MF ranking than Top picks goes, and less popular.
            score = mf.astype(np.float64) - 0.5 * self._popularity_score(size)
            sources["mf"] = (
                (row, float(score[row]), "Listeners like you are discovering this")
                for row in top_rows(score, c.row_size * 8).tolist()
            )
        if "cooc" in c.discover_arms and user is not None:
            seeds = list(self._recent_positive_seeds(user, c.history_size))[c.cooc_window :]
            if seeds:
                found = self.cooccurrence.candidates(((r, w) for r, w, _ in seeds), now=now)
                ordered = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
                sources["cooc"] = (
                    (row, value, "Fans of what you play found this") for row, value in ordered
                )
        if "taste" in c.discover_arms and user is not None and user.artist_taste:
            taste = self.taste.scores(user, self.items, size, now=now).astype(np.float64)
            taste -= 0.3 * self._popularity_score(size)
            taste[taste <= 0] = -np.inf
            sources["taste"] = (
                (row, float(taste[row]), self._taste_reason(user, row, now))
                for row in top_rows(taste, c.row_size * 8).tolist()
            )
        if "new" in c.discover_arms and self.items.has_catalog:
            sources["new"] = (
                (row, score, reason)
                for row, score, reason in self._new_release_candidates(
                    user, now, personal_only=False
                )
            )
        if "long-tail" in c.discover_arms and len(self.popular_rows) > _LONG_TAIL_START:
            tail = self.popular_rows[_LONG_TAIL_START:]
            if mf is not None:
                tail = sorted(tail, key=lambda row: -float(mf[row]))
            sources["long-tail"] = (
                (row, 1.0 / (1.0 + i), "A hidden gem worth a listen") for i, row in enumerate(tail)
            )
        return sources

    def _popularity_score(self, size: int) -> np.ndarray:
        out = np.zeros(size, dtype=np.float64)
        n = min(size, len(self.popularity_score))
        out[:n] = self.popularity_score[:n]
        return out

    def _discover_row(
        self, user_id: str, user: UserState | None, builder: _RowBuilder, now: float
    ) -> Row:
        sources = self._discover_candidates(user_id, user, now)
        chosen: list[RecommendedItem] = []
        arms_used: dict[int, str] = {}
        per_artist: dict[int, int] = {}
        while sources and len(chosen) < self.config.row_size:
            arm = self.explorer.choose(sorted(sources))
            picked = None
            for row, score, reason in sources[arm]:
                if builder.accepts(row, per_artist):
                    picked = (row, score, reason)
                    break
            if picked is None:
                del sources[arm]
                continue
            row, score, reason = picked
            builder.take(row, per_artist)
            chosen.append(RecommendedItem(self.items.ids[row], round(score, 6), reason))
            arms_used[row] = arm
        if user is not None:
            user.discover_arms.update(arms_used)
            while len(user.discover_arms) > self.config.max_arm_memory:
                del user.discover_arms[next(iter(user.discover_arms))]
        return Row(DISCOVER, "Discover something new", tuple(chosen))

    def _new_release_candidates(
        self, user: UserState | None, now: float, *, personal_only: bool
    ) -> list[tuple[int, float, str]]:
        size = len(self.items)
        released = self.items.released_at[:size]
        window = self.config.new_release_window
        with np.errstate(invalid="ignore"):
            recent = np.flatnonzero((released <= now) & (released >= now - window))
        if not len(recent):
            return []
        out = []
        for row in recent.tolist():
            artist = int(self.items.artist_of[row])
            affinity = 0.0
            reason = f"New from {self.items.artists[artist]}" if artist >= 0 else "New release"
            if user is not None and user.artist_taste:
                artist_affinity = self.taste.artist_affinity(user, artist, now=now)
                affinity = self.taste.item_affinity(user, self.items, row, now=now)
                if artist_affinity <= 0 and affinity > 0:
                    reason = self._taste_reason(user, row, now).replace(
                        "Because you like", "New in"
                    )
            if personal_only and affinity <= 0:
                continue
            freshness = 1.0 - (now - float(released[row])) / window
            out.append((row, affinity + 0.1 * freshness, reason))
        out.sort(key=lambda entry: (-entry[1], entry[0]))
        return out

    def _new_releases_row(self, user: UserState | None, builder: _RowBuilder, now: float) -> Row:
        if not self.items.has_catalog:
            return Row(NEW_RELEASES, "New releases for you", ())
        personal = user is not None and bool(user.artist_taste)
        candidates = self._new_release_candidates(user, now, personal_only=personal)
        return builder.row(NEW_RELEASES, "New releases for you", candidates)

    def _trending_row(self, user: UserState | None, builder: _RowBuilder, now: float) -> Row:
        entries = []
        for row in self.trending_rows:
            plays = self.popularity.recent_play_count(row, now=now)
            entries.append((row, plays, f"Trending: {round(plays)} plays today"))
        return builder.row(TRENDING, "Trending now", entries)

    # ================================================================== state
    def snapshot(self) -> bytes:
        """The whole engine as bytes (versioned pickle); see :meth:`restore`."""
        self._features_for = None
        return pickle.dumps((SNAPSHOT_VERSION, self), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        """Rebuild an engine from :meth:`snapshot` bytes (only ever from a trusted source)."""
        version, engine = pickle.loads(data)  # noqa: S301 - our own snapshots only
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {version}, this code reads {SNAPSHOT_VERSION}")
        if not isinstance(engine, cls):
            raise TypeError(f"snapshot holds a {type(engine).__name__}, not an Engine")
        return engine


class _RowBuilder:
    """Fills rows while enforcing: active items only, exclusions, per-artist cap, no repeats."""

    def __init__(self, items: ItemIndex, size: int, max_per_artist: int) -> None:
        self.items = items
        self.size = size
        self.max_per_artist = max_per_artist
        self.excluded: set[int] = set()
        self.taken: set[int] = set()

    def accepts(self, row: int, per_artist: dict[int, int]) -> bool:
        """Whether ``row`` may go in the row being built (``per_artist``: its artist counts)."""
        if row in self.taken or row in self.excluded or not self.items.active[row]:
            return False
        artist = int(self.items.artist_of[row])
        return artist < 0 or per_artist.get(artist, 0) < self.max_per_artist

    def take(self, row: int, per_artist: dict[int, int]) -> None:
        self.taken.add(row)
        artist = int(self.items.artist_of[row])
        if artist >= 0:
            per_artist[artist] = per_artist.get(artist, 0) + 1

    def row(self, row_id: str, title: str, entries: Iterator[tuple[int, float, str]] | list) -> Row:
        chosen: list[RecommendedItem] = []
        per_artist: dict[int, int] = {}
        for row, score, reason in entries:
            if len(chosen) >= self.size:
                break
            if not self.accepts(row, per_artist):
                continue
            self.take(row, per_artist)
            chosen.append(RecommendedItem(self.items.ids[row], round(float(score), 6), reason))
        return Row(row_id, title, tuple(chosen))
