"""Hyperparameters of the recommender engine, in one frozen dataclass.

Every sub-model reads its own fields from :class:`EngineConfig`; nothing else is
configurable, so a config (plus the seed inside it) fully determines a run.

>>> config = EngineConfig(seed=1, row_size=5)
>>> config.row_size, config.max_per_artist
(5, 2)
>>> config.replace(row_size=8).row_size
8
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DAY = 86_400.0
HOUR = 3_600.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Hyperparameters of :class:`stream.engine.Engine` and its sub-models.

    Times (half-lives, windows) are seconds of event time.

    Parameters
    ----------
    seed
        Seeds every random choice (latent initialisation, negative sampling,
        exploration), so that a replay of the same events gives the same state.
    play_weight, replay_weight, skip_weight
        Signal strength of a fully completed play, of a replay and of an
        immediate skip (the skip weight is subtracted).
    late_skip_factor
        How much of ``skip_weight`` is left for a skip at the very end of the
        item (an early skip weighs more than a late one).
    unknown_completion
        Completion assumed for a play when neither the event nor the catalog
        knows the duration (for example CSV logs).
    strong_play_weight
        Signal at or above which a play counts as "strong" (seeds
        "Because you played X" and co-occurrence).
    n_factors, mf_learning_rate, mf_l2, mf_init_sigma
        Matrix factorisation (River ``reco.BiasedMF``) size, SGD step, L2 penalty
        on latents and initial spread of the latent factors.
    n_negatives
        Sampled negatives (label 0) learned per positive event.
    negative_every
        Learn the negatives of only one positive event in this many (a cost knob:
        each River update costs ~14 µs).
    negative_sampling
        ``"popularity"`` or ``"uniform"``: where MF's sampled negatives come from.
    mf_learn_repeats
        Whether MF also learns a positive repeat of an item still in the user's
        recent history (heavy rotation); skips are always learned.
    popularity_half_life, trending_half_life
        Half-lives of the long-term popularity and of the short "trending" window.
    trending_min_plays
        Floor: an item needs this many (decayed) recent plays to trend.
    hour_buckets, max_devices
        Granularity of context-aware popularity: day split into this many
        buckets, and this many distinct devices (others share one bucket).
    cooc_half_life, cooc_window, cooc_session_gap, max_neighbours, cooc_damping
        Item-to-item co-occurrence: decay, how many of the user's previous
        positive events pair with a new one, the gap after which a session ends
        (pairs across sessions count half), the neighbour cap per item, and the
        exponent of the neighbour's popularity used to damp very popular items.
    taste_half_life, max_taste_genres, max_taste_artists
        Decay and size caps of each user's genre / artist affinities.
    history_size
        Recent events kept per user (co-occurrence seeds, recent skips).
    skip_exclusion_window
        Items skipped within this window are not recommended.
    row_size, max_per_artist, because_rows
        Items per row, per-artist cap within a row, and how many
        "Because you played X" rows a list has.
    new_release_window
        How recent a release must be to appear in New releases.
    mf_blend, cooc_blend, taste_blend, popularity_blend
        Weights in the Top picks score of MF (raw), co-occurrence (relative to
        the best candidate), taste (relative affinity) and popularity (log plays
        relative to the most played candidate). Set on the simulator benchmark.
    skip_rerank_weight
        Weight of P(play-through) from the skip model in the same score.
    rerank_pool
        How many of the MF top items join the Top picks candidates (with
        co-occurrence neighbours, favourite artists' and genres' items and the
        popular chart).
    skip_learning_rate
        SGD step of the skip model's logistic regression.
    skip_learn_every
        The skip model learns from one event in this many (a cost knob: its
        features and River update cost ~25 µs per event; 1 learns from all;
        learning from every fourth event gave the same skip AUC on the simulator).
    skip_form_every
        Predictions and rankings use the skip model as read out of River at most
        this many learning steps ago (reading it out is a pass over all its
        features; 1 reads it after every step).
    discover_arms
        Candidate sources the exploration bandit chooses between for Discover.
    max_arm_memory
        Discover items per user whose source arm is remembered for rewards.
    trending_refresh
        Seconds of event time a cached global ranking (trending, popular, new
        releases) may be old before it is recomputed.
    carry_rows_seconds
        For this many seconds after a user's Discover and New releases rows were
        made, the user's next lists carry them over instead of making them again,
        as long as every item still qualifies (not played or skipped since, not
        shown by a row above, still in the catalog); 0 makes them for every list.
        Top picks, Because you played and Trending are made for every list.
    carry_rows_users
        Users whose rows are kept for carrying over (least recently listed
        dropped first): a bounded cache, not state.
    quick_list_seconds
        For this many seconds after a full list ranked a user's rows,
        :meth:`~stream.engine.Engine.quick_recommend` may patch them for the
        user's next events instead of ranking again; 0 turns quick lists off.
    quick_list_users
        Users whose latest rows are kept for quick lists (least recently listed
        dropped first): a bounded cache, not state, of ~18 KB per user.
    quick_reserve
        Top picks candidates kept below the row to refill it from in a quick
        list (Because you played and Trending rows are made again when an item
        of theirs goes; Discover and New releases wait for the next ranking).
    """

    seed: int = 0
    # signals
    play_weight: float = 1.0
    replay_weight: float = 1.5
    skip_weight: float = 1.0
    late_skip_factor: float = 0.25
    unknown_completion: float = 0.8
    strong_play_weight: float = 0.6
    # matrix factorisation
    n_factors: int = 32
    mf_learning_rate: float = 0.05
    mf_l2: float = 0.005
    mf_init_sigma: float = 0.1
    n_negatives: int = 1
    negative_every: int = 2
    mf_learn_repeats: bool = False
    negative_sampling: str = "popularity"
    # popularity / trending
    popularity_half_life: float = 14 * DAY
    trending_half_life: float = 1 * DAY
    trending_min_plays: float = 3.0
    hour_buckets: int = 4
    max_devices: int = 6
    # co-occurrence
    cooc_half_life: float = 30 * DAY
    cooc_window: int = 5
    cooc_session_gap: float = 2 * HOUR
    max_neighbours: int = 24
    cooc_damping: float = 0.5
    # taste
    taste_half_life: float = 30 * DAY
    max_taste_genres: int = 16
    max_taste_artists: int = 24
    # user state
    history_size: int = 32
    skip_exclusion_window: float = 7 * DAY
    # rows
    row_size: int = 10
    max_per_artist: int = 2
    because_rows: int = 2
    new_release_window: float = 30 * DAY
    # blending / re-ranking
    mf_blend: float = 1.0
    cooc_blend: float = 1.5
    taste_blend: float = 2.0
    popularity_blend: float = 2.5
    skip_rerank_weight: float = 0.5
    rerank_pool: int = 50
    skip_learning_rate: float = 0.01
    skip_learn_every: int = 4
    skip_form_every: int = 16
    # exploration
    discover_arms: tuple[str, ...] = ("mf", "cooc", "taste", "new", "long-tail")
    max_arm_memory: int = 30
    trending_refresh: float = 300.0
    carry_rows_seconds: float = 60.0
    carry_rows_users: int = 10_000
    quick_list_seconds: float = 300.0
    quick_list_users: int = 5_000
    quick_reserve: int = 5

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with some fields changed (configs are frozen)."""
        return dataclasses.replace(self, **changes)
