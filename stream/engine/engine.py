"""The recommender engine: learns from every event, answers with rows of reasons.

Pure Python + numpy + River, no Faust: the agents call :meth:`Engine.learn` per
event and :meth:`Engine.recommend` when a user's list is due; offline evaluation
calls :meth:`Engine.rank` and :meth:`Engine.predict_skip` on the same code.

Ranking is two-stage. Candidates come from cheap sources (the MF top of the
whole catalog via one matrix-vector product, co-occurrence neighbours of the
user's latest plays, items by the user's favourite artists and genres, the
popular chart); then every candidate gets a blended score of MF, co-occurrence,
taste and popularity plus the skip model's P(play-through). Gathering, scoring
and selecting the candidates is one compiled call
(:func:`~stream.engine.kernels.top_picks`); the other rows' candidates are
computed only when a row reaches them, and reasons only for the items taken.

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

import functools
import itertools
import math
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, NamedTuple

import numpy as np

from stream.engine import kernels, transplant
from stream.engine.config import EngineConfig
from stream.engine.cooccurrence import Cooccurrence
from stream.engine.exploration import DiscoveryBandit
from stream.engine.factors import FactorModel
from stream.engine.features import (
    ITEM_FEATURES,
    cooccurrence_inputs,
    event_features,
    item_and_taste_inputs,
    positive_seeds,
    recent_skip_share,
    user_context,
)
from stream.engine.item_updates import ItemSync, ItemUpdates
from stream.engine.popularity import Popularity, top_rows
from stream.engine.ranking import RankingCache
from stream.engine.signals import event_weight, hour_bucket, normalise_device
from stream.engine.skip_model import SkipModel
from stream.engine.state import ItemIndex, UserState, copied
from stream.engine.taste import TasteProfile
from stream.models import (
    CatalogItem,
    EventType,
    Interaction,
    RecommendationList,
    RecommendedItem,
    Row,
)

SNAPSHOT_VERSION: Final = 3
TOP_PICKS: Final = "top-picks"
BECAUSE_PREFIX: Final = "because-you-played:"
DISCOVER: Final = "discover"
NEW_RELEASES: Final = "new-releases"
TRENDING: Final = "trending"

#: Global charts are refreshed from learn() at least this often (events), whatever the clock.
_REFRESH_MAX_EVENTS: Final = 5_000
_CACHED_TRENDING: Final = 200
_CACHED_POPULAR: Final = 1_000
_POPULAR_CANDIDATES: Final = 50
_ARTIST_CANDIDATES: Final = 6
_ITEMS_PER_ARTIST_CANDIDATE: Final = 30
_GENRE_CANDIDATES: Final = 3
_GENRE_CANDIDATES_DEPTH: Final = 40
_CACHED_PER_GENRE: Final = 200
_DISCOVER_MF_POOL: Final = 200
#: New releases considered per list (the best matches; rows need a dozen).
_RELEASE_CANDIDATES: Final = 300
_LONG_TAIL_START: Final = 50
#: Long-tail rows selected before the whole tail is sorted (a Discover row takes a few).
_LONG_TAIL_HEAD: Final = 32
#: Skip-model coefficients when the skip model is left out of a ranking.
_NO_SKIP_MODEL: Final = np.zeros(len(ITEM_FEATURES))
#: Names of the entries of :func:`~stream.engine.features.event_features`.
_EVENT_FEATURES: Final = (*ITEM_FEATURES, "seen", "previous", "recent_skips")
#: The skip model's per-event features after the context ones, in this order.
_SKIP_VALUES: Final = (*_EVENT_FEATURES, "mf_user", "user_events")
_HOUR_NAMES: Final = ("at night", "in the morning", "in the afternoon", "in the evening")

#: A row candidate: (row, score, reason), the reason possibly deferred (called when taken).
Entry = tuple[int, float, str | Callable[[], str]]


class _CarriedRows(NamedTuple):
    """A user's slow rows as last made: when, and each row with its item rows."""

    made_at: float
    discover: tuple[tuple[int, ...], Row]
    new_releases: tuple[tuple[int, ...], Row]


class _Basis(NamedTuple):
    """A user's rows as last published, and what each can be refilled from.

    What :meth:`Engine.quick_recommend` patches: ``rows`` with their items' rows
    (``item_rows``) and, per row, the acceptable candidates that ranked just below
    it (``reserves``, reasons written). ``ranked_at`` is when :meth:`Engine.recommend`
    last ranked them; ``n_recent`` counts the user's events the rows account for.
    """

    ranked_at: float
    n_recent: int
    #: ``ItemIndex.rule_changes`` when the rows were checked against the rules
    rule_changes: int
    rows: tuple[Row, ...]
    item_rows: tuple[tuple[int, ...], ...]
    reserves: tuple[tuple[Entry, ...], ...]

    @classmethod
    def of(
        cls, ranked_at: float, user: UserState, rows: tuple[Row, ...], builder: _RowBuilder
    ) -> _Basis:
        """The basis of ``rows``, just made by ``builder``."""
        return cls(
            ranked_at,
            user.n_recent,
            builder.items.rule_changes,
            rows,
            tuple(builder.rows_of(row) for row in rows),
            tuple(builder.reserves.get(row.row_id, ()) for row in rows),
        )

    def carried(self, index: int, builder: _RowBuilder) -> Row | None:
        """Row ``index`` as it was if every item still qualifies (taken), else ``None``."""
        row, item_rows = self.rows[index], self.item_rows[index]
        if self.rule_changes == builder.items.rule_changes:
            # Its items still obey the catalog's rules: only new exclusions and the rows
            # above can have claimed one (two set tests instead of a test per item).
            if builder.excluded.isdisjoint(item_rows) and builder.taken.isdisjoint(item_rows):
                builder.taken.update(item_rows)
                return row
        elif builder.take_all(item_rows):
            return row
        return None

    def refilled(self, index: int, builder: _RowBuilder) -> Row:
        """Row ``index`` with the items that still qualify, then the best of its reserve."""
        row, item_rows = self.rows[index], self.item_rows[index]
        reserve = self.reserves[index]
        items = row.items
        kept = [(at, item.score, item.reason) for at, item in zip(item_rows, items, strict=True)]
        return builder.row(row.row_id, row.title, [*kept, *reserve], reserve=len(reserve))

    def moved_on(self, user: UserState, rows: tuple[Row, ...], builder: _RowBuilder) -> _Basis:
        """The basis after a quick list made ``rows`` from it (same ranking time)."""
        before = {id(row): index for index, row in enumerate(self.rows)}
        item_rows, reserves = [], []
        for row in rows:
            index = before.get(id(row))
            if index is None:  # refilled or new
                item_rows.append(builder.rows_of(row))
                reserves.append(builder.reserves.get(row.row_id, ()))
            else:
                item_rows.append(self.item_rows[index])
                reserves.append(self.reserves[index])
        return _Basis(
            self.ranked_at,
            user.n_recent,
            builder.items.rule_changes,
            rows,
            tuple(item_rows),
            tuple(reserves),
        )


class _Scored(NamedTuple):
    """Candidates of one user with their score and the features behind reasons (aligned)."""

    rows: np.ndarray
    score: np.ndarray
    cooc: np.ndarray
    taste: np.ndarray
    #: Per candidate, the seed it co-occurs with most (-1: none), for reasons.
    best_seed: np.ndarray
    #: Positions of the best ``k`` candidates asked for, best first.
    best: np.ndarray


class Engine:
    """Online recommender: MF + co-occurrence + popularity + taste + skip model + bandit.

    Parameters
    ----------
    config
        Hyperparameters; ``EngineConfig()`` when omitted.

    Notes
    -----
    Not thread-safe: one engine per worker, fed in event-time order per user.
    :meth:`rank` is a pure query. :meth:`recommend` is not: it records which
    exploration arm filled each Discover slot, advances the bandit's sampler,
    may refresh the cached global charts, and keeps the user's Discover and New
    releases rows to carry over into their next list (``carry_rows_seconds``).
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
            negative_sampling=c.negative_sampling,
        )
        self.taste = TasteProfile(
            half_life=c.taste_half_life,
            max_genres=c.max_taste_genres,
            max_artists=c.max_taste_artists,
        )
        self.skip_model = SkipModel(
            learning_rate=c.skip_learning_rate, l2=0.0, form_every=c.skip_form_every
        )
        self.explorer = DiscoveryBandit(arms=c.discover_arms, seed=c.seed)
        self.n_events = 0
        self.n_lists = 0
        # Global charts, refreshed from learn() (and recommend()), never from rank().
        self.trending_rows: list[int] = []
        self.popular_rows: list[int] = []
        self.popular_by_genre: list[np.ndarray] = []
        # Rows released within the window at the last refresh, plus items upserted since.
        self.release_rows: list[int] = []
        self._release_array: np.ndarray | None = None  # release_rows, sorted
        self._release_times: np.ndarray | None = None  # their release dates (aligned)
        self.popularity_score = np.zeros(0, dtype=np.float32)
        self.refreshed_at: float | None = None
        self.events_since_refresh = 0
        # Features of the last event seen by predict_skip/learn, and the state version
        # they were computed on (bumped by every change that could alter features).
        self._features_for: tuple[Interaction, int, dict[str, float], list[float]] | None = None
        self._state_version = 0
        # What of the item side has been shared with other engines (from the first take/apply).
        self.item_sync: ItemSync | None = None
        self._ranking = RankingCache()
        # user_id -> their latest slow rows, for carrying over (see _slow_rows); a cache.
        self._carried: OrderedDict[str, _CarriedRows] = OrderedDict()
        # user_id -> the rows of their latest list, for quick lists (see quick_recommend).
        self._bases: OrderedDict[str, _Basis] = OrderedDict()

    def __repr__(self) -> str:
        return f"Engine({self.config!r})"

    # ================================================================== catalog
    def upsert_item(self, item: CatalogItem) -> None:
        """Add or update an item's catalog metadata (a removed item comes back)."""
        previous = self.items.row(item.item_id)
        artist = -1 if previous is None else int(self.items.artist_of[previous])
        row = self.items.upsert(item)
        self._ranking.catalog_changed(artist, int(self.items.artist_of[row]))
        self._state_version += 1
        self._carried.clear()  # a new or changed item may belong in anyone's slow rows
        self._release_array = None  # the item's release date may have changed
        if self.refreshed_at is None or (
            item.released_at >= self.refreshed_at - self.config.new_release_window
        ):
            self.release_rows.append(row)

    def remove_item(self, item_id: str) -> None:
        """Catalog tombstone: the item is never recommended again (until re-upserted)."""
        self.items.remove(item_id)
        self._state_version += 1

    # ================================================================== learning
    def _user(self, user_id: str) -> UserState:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserState(self.config.history_size)
        return user

    def learn(self, event: Interaction, *, item_side: bool = True) -> None:
        """Update every sub-model with one event (in event-time order per user).

        The event is not modified. The skip model learns from the features the
        event had *before* this update (the same ones :meth:`predict_skip` saw).

        With ``item_side=False`` only the user's side learns: history, counts,
        taste, the user's latent factors and bias (against the item's, held
        fixed), and this engine's skip model and Discover bandit. Item state --
        popularity, co-occurrence, item factors and biases, River's global mean
        -- is left exactly as it was (the item gets a row if new), and nothing
        of the event appears in :meth:`take_item_updates`: for events whose item
        side already arrived through :meth:`apply_item_updates`.
        """
        c = self.config
        items = self.items
        sync = self.item_sync
        row = items.add(event.item_id)
        user = self._user(event.user_id)
        at = event.timestamp
        weight = event_weight(event, c, items.catalog_duration(row))
        is_skip = event.type is EventType.SKIP
        if self.n_events % c.skip_learn_every == 0:
            self.skip_model.learn(self._skip_features(event, user, row), label=is_skip)
        self._state_version += 1
        self._features_for = None

        source = event.source
        if source is not None and source.row == DISCOVER:
            arm = _pop_arm(user, row, c.discover_arms)
            if arm is not None:
                self.explorer.reward(arm, played=not is_skip)

        # Heavy rotation adds little to MF and drags it towards a few items: a repeat of
        # an item still in the user's recent history is not learned again, unless skipped.
        if is_skip or c.mf_learn_repeats or row not in user.recent_rows:
            if item_side:
                self.factors.learn(
                    event.user_id,
                    row,
                    weight,
                    may_sample=not user.has_seen(row),
                    item_id=event.item_id,
                    changed=None if sync is None else sync.mf_touched,
                )
            else:
                self.factors.learn_user(
                    event.user_id, row, weight, may_sample=not user.has_seen(row)
                )
        if item_side:
            self.popularity.learn(row, positive=not is_skip, at=at, device=event.device)
            if not is_skip:
                self.cooccurrence.learn_recent(
                    row,
                    weight,
                    at=at,
                    rows=user.recent_rows,
                    weights=user.recent_weights,
                    times=user.recent_times,
                    n_recent=user.n_recent,
                    size=len(items),
                    journal=None if sync is None else sync.journal,
                )
            if sync is not None:
                sync.touched.add(row)
        if items.titles[row] is not None:
            self.taste.learn(user, items, row, weight, at=at)

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
        if self._refresh_due(at) or self.events_since_refresh >= _REFRESH_MAX_EVENTS:
            self.refresh(now=at)

    def _refresh_due(self, now: float) -> bool:
        if not self.events_since_refresh:
            return False
        if self.refreshed_at is None:
            return True
        # A refresh costs O(items): spread it over at least items/10 events.
        enough_events = self.events_since_refresh >= max(1, len(self.items) // 10)
        return enough_events and now - self.refreshed_at >= self.config.trending_refresh

    def refresh(self, *, now: float) -> None:
        """Recompute the cached global charts (trending, popular) at event time ``now``.

        Called from :meth:`learn` every few minutes of event time (or every few
        thousand events) and from :meth:`recommend` when stale.
        """
        size = len(self.items)
        self.trending_rows = self.popularity.top_trending(_CACHED_TRENDING, now=now)
        self.popular_rows = self.popularity.top_popular(_CACHED_POPULAR, now=now)
        plays = self.popularity.popularity_vector(size, now=now)
        self.popular_by_genre = self._popular_by_genre(plays)
        with np.errstate(invalid="ignore"):
            released = self.items.released_at[:size] >= now - self.config.new_release_window
        self.release_rows = np.flatnonzero(released).tolist()
        self._release_array = None
        top = float(plays.max()) if size else 0.0
        self.popularity_score = (np.log1p(plays) / math.log1p(max(top, 1.0))).astype(np.float32)
        self.refreshed_at = now
        self.events_since_refresh = 0

    def _popular_by_genre(self, plays: np.ndarray) -> list[np.ndarray]:
        """Most played active rows of each genre (candidates for users who like the genre)."""
        size = len(plays)
        playable = np.flatnonzero((plays > 0) & self.items.active[:size])
        # One sort of the played rows (most played first, ties by row), then each genre
        # keeps its first rows in that order: no partial sort of the catalog per genre.
        ranked = playable[np.argsort(-plays[playable], kind="stable")]
        rows, starts = kernels.rows_by_genre(
            ranked, self.items.genres_of, len(self.items.genres), _CACHED_PER_GENRE
        )
        return np.split(rows, starts[1:-1]) if len(self.items.genres) else []

    # ================================================================== feature models
    def _positive_seeds(self, user: UserState, limit: int) -> list[tuple[int, float, float]]:
        return positive_seeds(user, limit)

    def _skip_features(self, event: Interaction, user: UserState, row: int) -> dict[str, float]:
        """Context + item features of an event, before learning it, by name (see
        :meth:`_skip_inputs`)."""
        context, values = self._skip_inputs(event, user, row)
        features = dict(context)
        features.update(zip(_SKIP_VALUES, values, strict=True))
        return features

    def _skip_inputs(
        self, event: Interaction, user: UserState, row: int
    ) -> tuple[dict[str, float], list[float]]:
        """Features of an event before learning it: the context by name, then the values of
        :data:`_SKIP_VALUES` (memoised per event).

        The memo holds the features of one event object for the engine state they were
        computed on: :meth:`predict_skip` followed by :meth:`learn` of the same event
        computes them once, and any state change in between (another event learned, a
        catalog update) invalidates it, so the memo never changes a result.
        """
        memo = self._features_for
        if memo is not None and memo[0] is event and memo[1] == self._state_version:
            return memo[2], memo[3]
        now = event.timestamp
        context = user_context(user, now, event.device, from_list=event.source is not None)
        values = event_features(self, event.user_id, user, row, now).tolist()
        values.append(self.factors.river.u_biases.get(event.user_id, 0.0))
        values.append(math.log1p(user.n_events))
        self._features_for = (event, self._state_version, context, values)
        return context, values

    def predict_skip(self, event: Interaction) -> float:
        """P(skip) for ``event`` from the contextual skip model, before learning it.

        Changes no model state; it memoises the event's features, which
        :meth:`learn` reuses when called next with the same event.
        """
        user = self.users.get(event.user_id)
        if user is None:
            user = UserState(1)
        row = self.items.row(event.item_id)
        if row is None:
            features = user_context(
                user, event.timestamp, event.device, from_list=event.source is not None
            )
            return self.skip_model.predict(features)
        context, values = self._skip_inputs(event, user, row)
        return self.skip_model.predict_split(context, _SKIP_VALUES, values)

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
        self._carried.pop(user_id, None)
        self._bases.pop(user_id, None)
        self._state_version += 1
        return found

    def top_genres(self, user_id: str, k: int, *, now: float) -> list[tuple[str, float]]:
        """The user's strongest genre affinities (for the profile API)."""
        user = self.users.get(user_id)
        return [] if user is None else self.taste.top_genres(user, self.items, k, now=now)

    def top_artists(self, user_id: str, k: int, *, now: float) -> list[tuple[str, float]]:
        """The user's strongest artist affinities (for the profile API)."""
        user = self.users.get(user_id)
        return [] if user is None else self.taste.top_artists(user, self.items, k, now=now)

    def recent_events(self, user_id: str, k: int) -> list[tuple[str, float, float]] | None:
        """The user's last ``k`` kept events, last learned first, as ``(item_id, weight, time)``.

        ``weight`` is the learned signal (negative for a skip). ``None`` for an
        unknown user. A pure query (for the profile API).
        """
        user = self.users.get(user_id)
        if user is None:
            return None
        ids = self.items.ids
        return [
            (ids[row], float(weight), float(at))
            for row, weight, at in itertools.islice(user.newest_first(), max(k, 0))
        ]

    def similar_items(self, item_id: str, k: int, *, now: float) -> list[tuple[str, float]] | None:
        """Up to ``k`` active items most often played with ``item_id`` (co-occurrence).

        Strongest first, as ``(item_id, score)``; ``None`` when the item is unknown
        or withdrawn from the catalog. A pure query (for the similar-items API).
        """
        row = self.items.row(item_id)
        if row is None or not self.items.active[row]:
            return None
        neighbours = self.cooccurrence.neighbours(row, self.config.max_neighbours, now=now)
        active, ids = self.items.active, self.items.ids
        return [(ids[other], score) for other, score in neighbours if active[other]][: max(k, 0)]

    # ================================================================== ranking
    def _mf_scores(
        self, user_id: str, user: UserState, k: int
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """MF score of every row (``-inf`` where not recommendable: inactive, seen,
        unlearned) and the ``k`` best rows; ``(None, [])`` for a user MF does not know.

        The scores live in a scratch buffer, valid until the next call.
        """
        size = len(self.items)
        found = self.factors.scores_and_top(
            user_id, size, self.items.penalty, copied(user.seen, np.int32), k
        )
        if found is None:
            return None, np.zeros(0, dtype=np.int64)
        return found

    def _artist_candidates(self, user: UserState) -> list[int]:
        if not user.artist_keys:
            return []
        ranked = sorted(
            zip(user.artist_values, user.artist_keys, strict=True), key=lambda vk: (-vk[0], vk[1])
        )
        out: list[int] = []
        for value, artist in ranked[:_ARTIST_CANDIDATES]:
            if value > 0:
                out.extend(self.items.artist_items[artist][-_ITEMS_PER_ARTIST_CANDIDATE:])
        return out

    def _genre_candidates(
        self, user: UserState, depth: int = _GENRE_CANDIDATES_DEPTH
    ) -> list[np.ndarray]:
        """The ``depth`` most played items of each of the user's favourite genres."""
        if not user.genre_keys or not self.popular_by_genre:
            return []
        ranked = sorted(
            zip(user.genre_values, user.genre_keys, strict=True), key=lambda vk: (-vk[0], vk[1])
        )
        return [
            self.popular_by_genre[genre][:depth]
            for value, genre in ranked[:_GENRE_CANDIDATES]
            if value > 0 and genre < len(self.popular_by_genre)
        ]

    def _score(
        self,
        user_id: str,
        user: UserState,
        now: float,
        device: str | None,
        mf_top: np.ndarray,
        k: int = 0,
    ) -> _Scored:
        """Candidates for Top picks with their scores (unsorted) and the best ``k`` of them.

        The score is a blend of MF, co-occurrence, taste and popularity plus the
        skip model's P(play-through) weighted by ``skip_rerank_weight``
        (:func:`~stream.engine.kernels.top_picks_score`); candidates come from the
        co-occurrence neighbours of the latest plays, the popular chart, the MF
        top ``mf_top``, favourite artists' and genres' items. One compiled call
        (:func:`~stream.engine.kernels.top_picks`) does all of it.
        """
        c = self.config
        items = self.items
        cache = self._ranking
        seen = copied(user.seen, np.int32)
        weight = 0.0
        coefficients, intercept = _NO_SKIP_MODEL, 0.0
        if c.skip_rerank_weight and self.skip_model.n_learned:
            common = user_context(user, now, device, from_list=True)
            common["seen"] = 0.0
            common["previous"] = 0.0
            common["recent_skips"] = recent_skip_share(user)
            common["mf_user"] = self.factors.river.u_biases.get(user_id, 0.0)
            common["user_events"] = math.log1p(user.n_events)
            coefficients, intercept = self.skip_model.linear_form(common, ITEM_FEATURES)
            weight = c.skip_rerank_weight
        has_taste = len(user.artist_keys) > 0
        genre_rows, genre_starts = cache.genre_sources(self.popular_by_genre)
        tails, tail_sizes = cache.artist_tails(items, _ITEMS_PER_ARTIST_CANDIDATE)
        tag = cache.scratch(len(items))
        rows, score, cooc, taste, best_seed, best = kernels.top_picks(
            user.recent_rows,
            user.recent_weights,
            user.n_recent,
            c.cooc_window,
            seen,
            items.active,
            mf_top,
            cache.popular(self.popular_rows, _POPULAR_CANDIDATES),
            tails,
            tail_sizes,
            _ARTIST_CANDIDATES if has_taste else 0,
            genre_rows,
            genre_starts,
            _GENRE_CANDIDATES_DEPTH,
            _GENRE_CANDIDATES if len(user.genre_keys) and self.popular_by_genre else 0,
            *cooccurrence_inputs(self, now),
            cache.stamps,
            tag,
            cache.cooc,
            cache.seed,
            cache.strength,
            *item_and_taste_inputs(self, user_id, user, now),
            1.0 / self.taste.total(user) if has_taste else 0.0,
            self.taste.scale_at(user, now) if has_taste else 0.0,
            c.mf_blend,
            c.cooc_blend,
            c.taste_blend,
            c.popularity_blend,
            coefficients,
            intercept,
            weight,
            k,
        )
        return _Scored(rows, score, cooc, taste, best_seed, best)

    def _cold_ranking(
        self, now: float, device: str | None, exclude: Iterable[int], k: int
    ) -> list[int]:
        """Context-aware popularity (hour of day, device) for users with no history."""
        size = len(self.items)
        scores = self.popularity.context_vector(size, now=now, device=device)
        scores[scores <= 0] = -np.inf
        scores[~self.items.active[:size]] = -np.inf
        excluded = list(exclude)
        if excluded:
            scores[excluded] = -np.inf
        return top_rows(scores, k).tolist()

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
        """Top-``k`` item ids the user has never interacted with, best first.

        A pure query (the Recommender protocol of :mod:`stream.evaluation`): the
        Top picks ranking. An unknown user gets the popular items of the moment.
        """
        user = self.users.get(user_id)
        ids = self.items.ids
        if user is None or not user.n_seen:
            return [ids[row] for row in self._cold_ranking(now, None, (), k)]
        _, mf_top = self._mf_scores(user_id, user, max(k, self.config.rerank_pool))
        scored = self._score(user_id, user, now, None, mf_top, max(k, 0))
        return [ids[row] for row in scored.rows[scored.best].tolist()]

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
            Request context; the device selects context-aware popularity and
            feeds the skip model. ``country`` is accepted and not used yet.

        Returns
        -------
        RecommendationList
            Rows in display order (Top picks, Because you played X, Discover,
            New releases, Trending); empty rows are left out; no item appears
            twice; withdrawn and recently skipped items never appear.
        """
        c = self.config
        if self._refresh_due(now):
            self.refresh(now=now)
        user = self.users.get(user_id)
        builder = _RowBuilder(self.items, c.row_size, c.max_per_artist)
        rows: list[Row] = []
        mf_all = None
        mf_top = np.zeros(0, dtype=np.int64)
        if user is not None and user.n_seen:
            builder.excluded.update(user.seen)
            builder.excluded.update(self._recently_skipped(user, now))
            # One pass over the catalog serves Top picks and Discover's MF arm.
            mf_all, mf_top = self._mf_scores(user_id, user, max(_DISCOVER_MF_POOL, c.rerank_pool))
            scored = self._score(user_id, user, now, device, mf_top[: c.rerank_pool])
            order = np.lexsort((scored.rows, -scored.score))
            cooc_top = float(scored.cooc.max()) if len(scored.cooc) else 0.0
            pick_reason = functools.partial(
                self._pick_reason, user, scored, now=now, cooc_top=cooc_top
            )
            rows.append(
                builder.row(
                    TOP_PICKS,
                    "Top picks for you",
                    (
                        (row, score, functools.partial(pick_reason, i))
                        for i, row, score in _in_chunks(
                            order, scored.rows[order], scored.score[order]
                        )
                    ),
                    reserve=c.quick_reserve,
                )
            )
            rows.extend(self._because_rows(user, builder, now))
        else:
            reason = self._context_reason(now, device)
            popular = self._cold_ranking(now, device, (), c.row_size * 5)
            rows.append(
                builder.row(
                    TOP_PICKS,
                    "Popular right now",
                    ((row, 1.0 / (1.0 + i), reason) for i, row in enumerate(popular)),
                )
            )
        rows.extend(self._slow_rows(user_id, user, builder, now, mf_all, mf_top))
        rows.append(self._trending_row(builder, now))
        made = tuple(row for row in rows if row.items)
        if user is not None and user.n_seen and c.quick_list_seconds > 0:
            self._keep_basis(user_id, _Basis.of(now, user, made, builder))
        return self._list(user_id, user, made, now)

    def _list(
        self, user_id: str, user: UserState | None, rows: tuple[Row, ...], now: float
    ) -> RecommendationList:
        self.n_lists += 1
        return RecommendationList(
            user_id=user_id,
            list_id=f"{user_id}:{int(now * 1000)}:{self.n_lists}",
            generated_at=now,
            rows=rows,
            based_on_events=0 if user is None else user.n_events,
            last_event_id=None if user is None else user.last_event_id,
            last_event_at=None if user is None else user.last_event_at,
        )

    def _quick_row(self, basis: _Basis, index: int, builder: _RowBuilder, now: float) -> Row:
        """Row ``index`` of ``basis`` for a quick list: as it was while every item still
        qualifies; else made again where that is cheap (a Because row from its item's
        neighbours, Trending from the chart), else refilled from its reserve (Top
        picks) or left a little shorter until the next ranking (Discover, New releases)."""
        row = basis.carried(index, builder)
        if row is not None:
            return row
        row_id = basis.rows[index].row_id
        if row_id.startswith(BECAUSE_PREFIX):
            seed = self._because_seed(row_id)
            if seed is not None:
                return self._because_row(seed, builder, now)
        elif row_id == TRENDING:
            return self._trending_row(builder, now)
        return basis.refilled(index, builder)

    def _keep_basis(self, user_id: str, basis: _Basis) -> None:
        bases = self._bases
        bases[user_id] = basis
        bases.move_to_end(user_id)
        while len(bases) > self.config.quick_list_users:
            bases.popitem(last=False)

    def quick_recommend(self, user_id: str, *, now: float) -> RecommendationList | None:
        """The user's last list brought up to date with what they did since, cheaply.

        A full :meth:`recommend` ranks the catalog (~1 ms); this patches the rows it
        made (its *basis*) in a few tens of µs, so a list can follow every event:

        - every item played or skipped since is gone from every row; Top picks is
          refilled from the candidates that ranked just below it, a Because row or
          Trending is made again (cheap), Discover and New releases stay one short
          until the next ranking;
        - each strong play since gets its "Because you played" row, from the item's
          current co-occurrence neighbours, ahead of the older ones;
        - everything else (the Top picks order, Discover, New releases, Trending)
          stays as ranked, and all of :meth:`recommend`'s rules hold: no item twice,
          at most ``max_per_artist`` per artist and row, no withdrawn item.

        Returns ``None`` (make a full list instead) when the user has no basis made
        within ``quick_list_seconds``. A quick list neither ranks again nor makes a
        new Discover row (so records no exploration arms): callers re-rank in the
        background (the worker's publisher does, whenever no user waits for a list).
        Not a pure query: the patched rows become the basis of the next quick list.
        """
        c = self.config
        basis = self._bases.get(user_id)
        user = self.users.get(user_id)
        if basis is None or user is None or not 0 <= now - basis.ranked_at < c.quick_list_seconds:
            return None
        builder = _RowBuilder(self.items, c.row_size, c.max_per_artist)
        builder.excluded.update(user.seen)
        builder.excluded.update(self._recently_skipped(user, now))
        made = []
        first = int(bool(basis.rows) and basis.rows[0].row_id == TOP_PICKS)
        if first:
            made.append(self._quick_row(basis, 0, builder, now))
        # Strong plays since the basis, newest first: their rows go before the older ones.
        new_seeds: list[int] = []
        fresh = min(user.n_recent - basis.n_recent, len(user.recent_rows))
        for row, weight, _ in itertools.islice(user.newest_first(), fresh):
            if weight >= c.strong_play_weight and row not in new_seeds:
                new_seeds.append(row)
        because = 0
        for seed in new_seeds:
            if because < c.because_rows:
                made.append(self._because_row(seed, builder, now))
                because += bool(made[-1].items)
        for index in range(first, len(basis.rows)):
            row_id = basis.rows[index].row_id
            if row_id.startswith(BECAUSE_PREFIX):
                if because >= c.because_rows or self._because_seed(row_id) in new_seeds:
                    continue
                made.append(self._quick_row(basis, index, builder, now))
                because += bool(made[-1].items)
            else:
                made.append(self._quick_row(basis, index, builder, now))
        rows = tuple(row for row in made if row.items)
        self._keep_basis(user_id, basis.moved_on(user, rows, builder))
        return self._list(user_id, user, rows, now)

    def _slow_rows(
        self,
        user_id: str,
        user: UserState | None,
        builder: _RowBuilder,
        now: float,
        mf_all: np.ndarray | None,
        mf_top: np.ndarray,
    ) -> tuple[Row, Row]:
        """Discover and New releases: carried over from the user's previous list while
        they still qualify (``carry_rows_seconds``), else made now.

        Exploration rows need not move with every play (a Discover row reshuffled
        on each event is worse to browse, not better), and they cost about half of
        a list. A carried row is taken whole or not at all: if any of its items was
        played or skipped since, is shown by a row above, or left the catalog, the
        row is made again, so every list keeps full rows and the rules of one.
        """
        c = self.config
        carries = user is not None and c.carry_rows_seconds > 0
        carried = None
        if carries:
            carried = self._carried.get(user_id)
            if carried is not None and not 0 <= now - carried.made_at < c.carry_rows_seconds:
                carried = None
        discover = carried.discover if carried is not None else None
        if discover is not None and not builder.take_all(discover[0]):
            discover = None
        releases_row = carried.new_releases if carried is not None else None
        releases: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if discover is None:
            releases = self._release_table(user, now)
            made = self._discover_row(user, builder, now, mf_all, mf_top, releases)
            discover = (builder.rows_of(made), made)
            releases_row = None  # made with the old Discover row's items excluded
        if releases_row is not None and not builder.take_all(releases_row[0]):
            releases_row = None
        if releases_row is None:
            if releases is None:
                releases = self._release_table(user, now)
            made = self._new_releases_row(user, builder, now, releases)
            releases_row = (builder.rows_of(made), made)
        if carries:
            if carried is None or carried.discover is not discover:
                carried = _CarriedRows(now, discover, releases_row)
            else:
                carried = _CarriedRows(carried.made_at, discover, releases_row)
            self._carried[user_id] = carried
            self._carried.move_to_end(user_id)
            while len(self._carried) > c.carry_rows_users:
                self._carried.popitem(last=False)
        return discover[1], releases_row[1]

    def _recently_skipped(self, user: UserState, now: float) -> set[int]:
        window = self.config.skip_exclusion_window
        return {row for row, weight, at in user.newest_first() if weight < 0 and now - at <= window}

    # ------------------------------------------------------------------ reasons
    def _pick_reason(
        self, user: UserState, scored: _Scored, i: int, now: float, cooc_top: float
    ) -> str:
        """The most specific true reason: a strong co-occurrence, else taste, else MF.

        ``cooc_top`` is the largest co-occurrence feature among the candidates.
        """
        row = int(scored.rows[i])
        cooc_share = float(scored.cooc[i]) / max(cooc_top, 1e-12)
        taste = float(scored.taste[i])
        if cooc_share >= 0.5 or (cooc_share > 0 and taste <= 0):
            best_seed = int(scored.best_seed[i])
            if best_seed >= 0:
                return f"Often played with {self.items.label(best_seed)}"
        if taste > 0:
            return self._taste_reason(user, row, now)
        return "Listeners with similar taste play this"

    def _taste_reason(self, user: UserState, row: int, now: float) -> str:
        artist = int(self.items.artist_of[row])
        if artist >= 0 and self.taste.artist_affinity(user, artist, now=now) > 0:
            return f"Because you listen to {self.items.artists[artist]}"
        best_genre = None
        best = 0.0
        for genre in self.items.genres_of[row].tolist():
            if genre >= 0:
                value = self.taste.genre_affinity(user, genre, now=now)
                if value > best:
                    best, best_genre = value, genre
        if best_genre is not None:
            return f"Because you like {self.items.genres[best_genre]}"
        return "Matches your taste"

    @staticmethod
    def _context_reason(now: float, device: str | None) -> str:
        when = _HOUR_NAMES[hour_bucket(now, 4)]
        name = normalise_device(device)
        if name == "unknown":
            return f"Popular {when}"
        return f"Popular on {name} {when}"

    # ------------------------------------------------------------------ rows
    def _because_rows(self, user: UserState, builder: _RowBuilder, now: float) -> list[Row]:
        c = self.config
        rows = []
        for seed, weight, _ in self._positive_seeds(user, c.history_size):
            if len(rows) >= c.because_rows:
                break
            if weight < c.strong_play_weight:
                continue
            row = self._because_row(seed, builder, now)
            if row.items:
                rows.append(row)
        return rows

    def _because_row(self, seed: int, builder: _RowBuilder, now: float) -> Row:
        """ "Because you played" ``seed``: its co-occurrence neighbours (empty if none)."""
        neighbours, scores = self._neighbours(seed, self.config.max_neighbours, now)
        label = self.items.label(seed)
        reason = f"Often played with {label}"
        return builder.row(
            f"{BECAUSE_PREFIX}{self.items.ids[seed]}",
            f"Because you played {label}",
            (
                (other, score, reason)
                for other, score in zip(neighbours.tolist(), scores.tolist(), strict=True)
            ),
        )

    def _because_seed(self, row_id: str) -> int | None:
        """The item row a "Because you played" row is about (``None``: no longer known)."""
        return self.items.rows.get(row_id.removeprefix(BECAUSE_PREFIX))

    def _neighbours(self, row: int, k: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """``Cooccurrence.neighbours`` as two arrays, in one compiled call."""
        cooccurrence = self.cooccurrence
        return kernels.scored_neighbours(
            cooccurrence.neighbour_rows,
            cooccurrence.strengths,
            cooccurrence.counts,
            row,
            cooccurrence.scale_at(now),
            cooccurrence.totals.raw(len(self.items)),
            cooccurrence.totals.scale(now),
            float(cooccurrence.damping),
            k,
        )

    def _discover_candidates(
        self,
        user: UserState | None,
        now: float,
        mf_all: np.ndarray | None,
        mf_top: np.ndarray,
        releases: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> dict[str, Iterator[Entry]]:
        """Ordered candidate streams per exploration arm: (row, score, reason), lazily.

        Which arms take part is decided here; each arm's candidates are scored and
        sorted only when the bandit first picks it (and reasons only for taken items).
        """
        c = self.config
        arms = c.discover_arms
        depth = c.row_size * 8
        sources: dict[str, Iterator[Entry]] = {}
        if "mf" in arms and mf_all is not None and len(mf_top):
            sources["mf"] = self._mf_discoveries(mf_all, mf_top, depth)
        if "cooc" in arms and user is not None:
            older = self._positive_seeds(user, c.history_size)[c.cooc_window :]
            if older:
                sources["cooc"] = self._cooc_discoveries(older, now)
        if "taste" in arms and user is not None and user.artist_keys:
            # Less played items of the user's genres and artists, by taste.
            pools = [
                genre_rows[_GENRE_CANDIDATES_DEPTH:]
                for genre_rows in self._genre_candidates(user, depth=_CACHED_PER_GENRE)
            ]
            pools.append(np.asarray(self._artist_candidates(user), dtype=np.int64))
            if any(len(pool) for pool in pools):
                sources["taste"] = self._taste_discoveries(user, pools, now, depth)
        if "new" in arms and self.items.has_catalog:
            sources["new"] = self._release_entries(user, releases, now, personal_only=False)
        if "long-tail" in arms and len(self.popular_rows) > _LONG_TAIL_START:
            sources["long-tail"] = self._long_tail_discoveries(mf_all)
        return sources

    def _mf_discoveries(self, mf_all: np.ndarray, pool: np.ndarray, depth: int) -> Iterator[Entry]:
        """Good MF matches that are not popular: the MF top re-ranked by MF minus popularity."""
        score = mf_all[pool].astype(np.float64) - 0.5 * self._popularity_at(pool)
        order = np.lexsort((pool, -score))[:depth]
        for row, value in zip(pool[order].tolist(), score[order].tolist(), strict=True):
            yield row, value, "Listeners like you are discovering this"

    def _cooc_discoveries(
        self, older: list[tuple[int, float, float]], now: float
    ) -> Iterator[Entry]:
        """Co-occurrence neighbours of the user's older plays, strongest first."""
        rows, values = self.cooccurrence.candidates(
            ((row, weight) for row, weight, _ in older), now=now
        )
        order = np.lexsort((rows, -values))
        for row, value in _in_chunks(rows[order], values[order]):
            yield row, value, "Fans of what you play found this"

    def _taste_discoveries(
        self, user: UserState, pools: list[np.ndarray], now: float, depth: int
    ) -> Iterator[Entry]:
        """Items of the user's genres and artists by taste, less the popular ones."""
        pool = _unique(np.concatenate(pools))
        taste = self.taste.scores(user, self.items, pool).astype(np.float64)
        taste -= 0.3 * self._popularity_at(pool)
        keep = taste > 0
        pool, taste = pool[keep], taste[keep]
        order = np.lexsort((pool, -taste))[:depth]
        reason = functools.partial(self._taste_reason, user, now=now)
        for row, value in zip(pool[order].tolist(), taste[order].tolist(), strict=True):
            yield row, value, functools.partial(reason, row)

    def _long_tail_discoveries(self, mf_all: np.ndarray | None) -> Iterator[Entry]:
        """The popular chart beyond its head, best MF match first (chart order without MF).

        The order is a stable sort of the tail by MF; rows are consumed a few at a
        time, so the first ones come from a selection and the full sort is made
        only if they run out.
        """
        tail = np.asarray(self.popular_rows[_LONG_TAIL_START:], dtype=np.int64)
        reason = "A hidden gem worth a listen"
        if mf_all is None:
            for i, row in enumerate(tail.tolist()):
                yield row, 1.0 / (1.0 + i), reason
            return
        values = mf_all[tail]
        head = top_rows(values, _LONG_TAIL_HEAD)
        for i, row in enumerate(tail[head].tolist()):
            yield row, 1.0 / (1.0 + i), reason
        order = np.argsort(-values, kind="stable")
        for i, row in enumerate(tail[order[len(head) :]].tolist(), start=len(head)):
            yield row, 1.0 / (1.0 + i), reason

    def _popularity_at(self, rows: np.ndarray) -> np.ndarray:
        """Cached normalised log popularity of ``rows`` (0 for rows newer than the cache)."""
        out = np.zeros(len(rows))
        known = rows < len(self.popularity_score)
        out[known] = self.popularity_score[rows[known]]
        return out

    def _discover_row(
        self,
        user: UserState | None,
        builder: _RowBuilder,
        now: float,
        mf_all: np.ndarray | None,
        mf_top: np.ndarray,
        releases: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> Row:
        sources = self._discover_candidates(user, now, mf_all, mf_top, releases)
        chosen: list[RecommendedItem] = []
        per_artist: dict[int, int] = {}
        while sources and len(chosen) < self.config.row_size:
            arm = self.explorer.choose(sorted(sources))
            picked = None
            for row, score, reason in sources[arm]:
                if builder.admit(row, per_artist):
                    picked = (row, score, reason)
                    break
            if picked is None:
                del sources[arm]
                continue
            row, score, reason = picked
            if not isinstance(reason, str):
                reason = reason()
            builder.taken.add(row)
            chosen.append(RecommendedItem(self.items.ids[row], round(score, 6), reason))
            if user is not None:
                _remember_arm(user, row, self.config.discover_arms.index(arm), self.config)
        return Row(DISCOVER, "Discover something new", tuple(chosen))

    def _release_table(
        self, user: UserState | None, now: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The best few hundred items released within ``new_release_window`` before ``now``.

        Returns rows, scores (taste for the item plus a little freshness) and taste
        affinities, aligned and sorted by score.
        """
        if self.refreshed_at is None:
            candidates = np.arange(len(self.items))
            released = self.items.released_at[: len(self.items)]
        else:
            candidates = self._release_candidates()
            assert self._release_times is not None
            released = self._release_times
        # Rows are consumed best first and rarely beyond a few rows' worth: one selection
        # of the best few hundred instead of sorting every recent release of a big catalog.
        taste, scale = _NO_TASTE, 0.0
        if user is not None and user.artist_keys:
            taste, scale = _taste_arrays(user), 1.0 / self.taste.total(user)
        items = self.items
        return kernels.release_table(
            candidates,
            released,
            items.active,
            now,
            self.config.new_release_window,
            items.artist_of,
            items.genres_of,
            *taste,
            len(items.artists),
            len(items.genres),
            scale,
            max(_RELEASE_CANDIDATES, 20 * self.config.row_size),
        )

    def _release_candidates(self) -> np.ndarray:
        """:attr:`release_rows` as a sorted distinct array, converted once per change.

        Their release dates are kept aligned (:attr:`_release_times`): the window
        test then reads one short array instead of the catalog's, row by row.
        """
        if self._release_array is None:
            self._release_array = _unique(np.asarray(self.release_rows, dtype=np.int64))
            self._release_times = self.items.released_at[self._release_array]
        return self._release_array

    def _release_entries(
        self,
        user: UserState | None,
        table: tuple[np.ndarray, np.ndarray, np.ndarray],
        now: float,
        *,
        personal_only: bool,
    ) -> Iterator[Entry]:
        """(row, score, reason) from a :meth:`_release_table`, reasons written lazily.

        ``personal_only`` keeps only items of liked artists or genres.
        """
        rows, scores, affinity = table
        reason = functools.partial(self._release_reason, user, now=now)
        for row, score, taste in _in_chunks(rows, scores, affinity):
            if personal_only and taste <= 0:
                continue
            yield row, score, functools.partial(reason, row, taste)

    def _release_reason(self, user: UserState | None, row: int, affinity: float, now: float) -> str:
        artist = int(self.items.artist_of[row])
        if artist < 0:
            return "New release"
        if (
            user is not None
            and affinity > 0
            and self.taste.artist_affinity(user, artist, now=now) <= 0
        ):
            return self._taste_reason(user, row, now).replace("Because you like", "New in")
        return f"New from {self.items.artists[artist]}"

    def _new_releases_row(
        self,
        user: UserState | None,
        builder: _RowBuilder,
        now: float,
        releases: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> Row:
        if not self.items.has_catalog:
            return Row(NEW_RELEASES, "New releases for you", ())
        personal = user is not None and bool(user.artist_keys)
        entries = self._release_entries(user, releases, now, personal_only=personal)
        return builder.row(NEW_RELEASES, "New releases for you", entries)

    def _trending_row(self, builder: _RowBuilder, now: float) -> Row:
        # Recent play counts (Popularity.recent_play_count) of the whole chart at once.
        recent = self.popularity.recent_plays
        rows = np.asarray(self.trending_rows, dtype=np.int64)
        plays = recent.raw(len(self.items))[rows] * recent.scale(now)

        def entries() -> Iterator[Entry]:
            for row, count in _in_chunks(rows, plays):
                yield row, count, _trending_reason(round(count))

        return builder.row(TRENDING, "Trending now", entries())

    # ================================================================== item replicas
    def take_item_updates(self) -> ItemUpdates | None:
        """Item-side changes this engine's own :meth:`learn` made since the previous take.

        ``None`` when there are none. What :meth:`apply_item_updates` added is
        never included, nor events learned with ``item_side=False``. The first
        take of an engine includes everything it learned before (the whole
        item side, for an engine that never applied updates). Taking is
        cheap: its cost grows with the items changed since the last take, not
        with the catalog (the first take copies the count vectors once).

        A snapshot keeps this bookkeeping: a restored engine's next take holds
        what the engine had learned but not yet taken at the snapshot, plus what
        it learned since. Take (and publish) before a snapshot, so the snapshot
        owes nothing.

        See :mod:`stream.engine.item_updates` for what is sent and how exactly
        replicas agree.
        """
        if self.item_sync is None:
            self.item_sync = ItemSync.started(self)
        return self.item_sync.take(self)

    def apply_item_updates(self, updates: ItemUpdates) -> None:
        """Add another engine's :meth:`take_item_updates` to this engine's item side.

        Items named for the first time are created (with no catalog metadata);
        items removed from the catalog here stay removed. Never apply an
        engine's own updates, nor the same updates twice: they add up.

        Raises
        ------
        ValueError
            When the updates come from an engine configured differently
            (half-lives, latent factors, hour buckets); nothing is changed then.
        """
        ItemSync.check(self, updates)
        if self.item_sync is None:
            self.item_sync = ItemSync.started(self)
        self.item_sync.apply(self, updates)
        self._state_version += 1
        # Charts refresh by events learned: count the other engines' events too.
        self.events_since_refresh += updates.n_events

    # ================================================================== state
    def snapshot(self) -> bytes:
        """The whole engine as bytes (a versioned pickle); see :meth:`restore`."""
        memo, self._features_for = self._features_for, None
        try:
            return pickle.dumps((SNAPSHOT_VERSION, self), protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            self._features_for = memo

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        """Rebuild an engine from :meth:`snapshot` bytes (only ever from a trusted source)."""
        version, engine = pickle.loads(data)  # noqa: S301 - our own snapshots only
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {version}, this code reads {SNAPSHOT_VERSION}")
        if not isinstance(engine, cls):
            raise TypeError(f"snapshot holds a {type(engine).__name__}, not an Engine")
        return engine

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_carried"], state["_bases"]  # caches
        if self.item_sync is not None:
            # Item-update bases equal the values except where not yet taken: only that is kept.
            state["item_sync"] = self.item_sync.packed(self)
        return state

    def __setstate__(self, state: dict) -> None:
        # Caches are not state: a restored engine starts without them.
        state["_features_for"] = None
        state["_release_array"] = None
        state["_release_times"] = None
        state.setdefault("_ranking", RankingCache())
        state["_carried"] = OrderedDict()
        state["_bases"] = OrderedDict()
        state.setdefault("_state_version", 0)  # snapshots from before the memo key
        settle = "item_sync" not in state  # snapshots from before item updates
        self.__dict__.update(state)
        if settle:
            self.item_sync = ItemSync.settled(self)
        elif self.item_sync is not None:
            self.item_sync.unpack(self)

    # ================================================================== moving users
    def export_users(self, user_ids: Iterable[str]) -> dict[str, Any]:
        """Everything kept about ``user_ids``, by item id, genre and artist name (picklable).

        For another engine's :meth:`import_users` when a partition's users move
        to another worker (layout: :mod:`stream.engine.transplant`). Unknown ids
        are skipped. A pure query: this engine is not changed.
        """
        return transplant.export_users(self, user_ids)

    def import_users(self, exported: dict[str, Any]) -> int:
        """Add or replace the users of an :meth:`export_users` result; returns how many.

        Item ids, genres and artists are mapped to this engine's rows and keys;
        the ones it has never seen are added (items without catalog metadata,
        which only this engine's catalog provides). A replaced user's previous
        state, latent factors included, is dropped first. Item-side statistics
        (popularity, co-occurrence, item factors) are not part of an export.
        ``exported`` is not modified.
        """
        self._state_version += 1
        self._features_for = None
        self._carried.clear()
        self._bases.clear()
        return transplant.import_users(self, exported)

    def drop_users(self, user_ids: Iterable[str]) -> int:
        """Free the memory kept about ``user_ids`` (state and latent factors); how many were known.

        Unlike a deletion (:meth:`forget_user` called by the pipeline, which also
        refuses the user's older events from then on) this only frees memory, for
        users another worker now owns.
        """
        self._state_version += 1
        self._features_for = None
        self._carried.clear()
        self._bases.clear()
        return transplant.drop_users(self, user_ids)


@functools.lru_cache(maxsize=4_096)
def _trending_reason(plays: int) -> str:
    """One shared string per count: every user's Trending row says the same things, and
    quick-list bases keep many of them."""
    return f"Trending: {plays} plays today"


def _in_chunks(*columns: np.ndarray, size: int = 32) -> Iterator[tuple]:
    """Rows of aligned arrays as Python tuples, converted a chunk at a time.

    Row builders usually stop after a dozen entries, so converting long candidate
    arrays with one ``tolist()`` each would mostly convert what is never read.

    >>> list(_in_chunks(np.arange(3), np.arange(3) * 0.5, size=2))
    [(0, 0.0), (1, 0.5), (2, 1.0)]
    """
    for start in range(0, len(columns[0]), size):
        yield from zip(*(column[start : start + size].tolist() for column in columns), strict=True)


_NO_TASTE: Final = (
    np.zeros(0, dtype=np.int32),
    np.zeros(0, dtype=np.float32),
    np.zeros(0, dtype=np.int32),
    np.zeros(0, dtype=np.float32),
)


def _taste_arrays(user: UserState) -> tuple[np.ndarray, ...]:
    """The user's artist and genre affinities (keys, values) as arrays for kernels."""
    return (
        copied(user.artist_keys, np.int32),
        copied(user.artist_values, np.float32),
        copied(user.genre_keys, np.int32),
        copied(user.genre_values, np.float32),
    )


def _unique(rows: np.ndarray) -> np.ndarray:
    """Sorted distinct values (cheaper than ``np.unique`` for the small arrays used here)."""
    if len(rows) < 2:
        return rows
    rows = np.sort(rows)
    keep = np.empty(len(rows), dtype=bool)
    keep[0] = True
    np.not_equal(rows[1:], rows[:-1], out=keep[1:])
    return rows[keep]


def _remember_arm(user: UserState, row: int, arm: int, config: EngineConfig) -> None:
    """Which exploration arm put ``row`` in this user's Discover row (bounded memory)."""
    if row in user.arm_rows:
        position = user.arm_rows.index(row)
        del user.arm_rows[position]
        del user.arm_ids[position]
    user.arm_rows.append(row)
    user.arm_ids.append(arm)
    if len(user.arm_rows) > config.max_arm_memory:
        del user.arm_rows[0]
        del user.arm_ids[0]


def _pop_arm(user: UserState, row: int, arms: tuple[str, ...]) -> str | None:
    """The arm remembered for ``row`` (forgotten once rewarded), or ``None``."""
    if row not in user.arm_rows:
        return None
    position = user.arm_rows.index(row)
    arm = user.arm_ids[position]
    del user.arm_rows[position]
    del user.arm_ids[position]
    return arms[arm] if 0 <= arm < len(arms) else None


class _RowBuilder:
    """Fills rows while enforcing: active items only, exclusions, per-artist cap, no repeats."""

    def __init__(self, items: ItemIndex, size: int, max_per_artist: int) -> None:
        self.items = items
        self.size = size
        self.max_per_artist = max_per_artist
        self.excluded: set[int] = set()
        self.taken: set[int] = set()
        #: row_id -> the entries kept after a row was filled, and the rows of the items
        #: it took (see :meth:`row`).
        self.reserves: dict[str, tuple[Entry, ...]] = {}
        self.item_rows: dict[str, tuple[int, ...]] = {}

    def admit(self, row: int, per_artist: dict[int, int]) -> bool:
        """Whether ``row`` may go in the row being built, counted in ``per_artist`` (the
        row's artist counts) if so. The caller adds an admitted row to :attr:`taken`
        (:meth:`take_all` only once every row of a set is admitted)."""
        if row in self.taken or row in self.excluded or not self.items.active[row]:
            return False
        artist = int(self.items.artist_of[row])
        if artist >= 0:
            count = per_artist.get(artist, 0)
            if count >= self.max_per_artist:
                return False
            per_artist[artist] = count + 1
        return True

    def take_all(self, rows: tuple[int, ...]) -> bool:
        """Take every one of ``rows`` (a row made before) if each is still acceptable;
        else take none and say ``False``."""
        per_artist: dict[int, int] = {}
        for row in rows:
            if not self.admit(row, per_artist):
                return False
        self.taken.update(rows)
        return True

    def rows_of(self, made: Row) -> tuple[int, ...]:
        """The item rows of a row this builder made."""
        known = self.item_rows.get(made.row_id)
        if known is not None and len(known) == len(made.items):
            return known
        rows = self.items.rows
        return tuple(rows[item.item_id] for item in made.items)

    def row(self, row_id: str, title: str, entries: Iterable[Entry], reserve: int = 0) -> Row:
        """A row of the first acceptable ``entries``; a callable reason is called when taken.

        With ``reserve``, up to that many further entries not excluded, not taken and
        active are kept in :attr:`reserves` under ``row_id``: what a quick list refills
        the row from once some of its items are played. The rows of the items taken
        are kept in :attr:`item_rows` under ``row_id``.
        """
        chosen: list[RecommendedItem] = []
        per_artist: dict[int, int] = {}
        spare: list[Entry] = []
        taken: list[int] = []
        size, admit = self.size, self.admit
        all_taken, excluded = self.taken, self.excluded
        active, ids = self.items.active, self.items.ids
        for row, score, reason in entries:
            if len(chosen) < size:
                if not admit(row, per_artist):
                    continue
                all_taken.add(row)
                taken.append(row)
            elif len(spare) < reserve:
                if row in all_taken or row in excluded or not active[row]:
                    continue
                # Written now: a deferred reason holds the ranking's arrays (~14 KB a user).
                spare.append((row, score, reason if isinstance(reason, str) else reason()))
                continue
            else:
                break
            if not isinstance(reason, str):
                reason = reason()
            chosen.append(RecommendedItem(ids[row], round(float(score), 6), reason))
        if reserve:
            self.reserves[row_id] = tuple(spare)
        self.item_rows[row_id] = tuple(taken)
        return Row(row_id, title, tuple(chosen))
