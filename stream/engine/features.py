"""Features of a (user, item) pair, shared by ranking and the skip model.

Two implementations of the same definitions: :func:`item_features` for one item
(per event, on the hot path of ``learn`` / ``predict_skip``) and
:func:`item_columns` for many candidates at once (numpy, for ranking). Tests
check that they agree, so what a model learns from is what it is served.

Item features
    ``mf`` (user·item latent dot product), ``mf_bias`` (item bias),
    ``taste`` (artist + genre affinity relative to the profile), ``artist``
    (artist affinity alone), ``popularity`` and ``trending`` (log decayed plays,
    long and short half-life), ``item_skip_rate`` (shrunk to the global rate),
    ``cooc`` (log co-occurrence with the user's latest plays), ``freshness``
    (decays with release age), and ``artist_signed`` / ``genre_signed``
    (absolute, log-compressed affinities, negative after skips).

>>> ITEM_FEATURES[:3]
('mf', 'mf_bias', 'taste')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from stream.engine import kernels
from stream.engine.kernels import N_ITEM_FEATURES, item_matrix
from stream.engine.signals import context_features
from stream.engine.state import UserState, copied

if TYPE_CHECKING:
    from stream.engine.engine import Engine

ITEM_FEATURES: Final = (
    "mf",
    "mf_bias",
    "taste",
    "artist",
    "popularity",
    "trending",
    "item_skip_rate",
    "cooc",
    "freshness",
    "artist_signed",
    "genre_signed",
)


def seed_weights(seeds: Iterable[tuple[int, float, float]]) -> list[tuple[int, float]]:
    """Co-occurrence seeds weighted by signal and recency rank (newest counts most).

    >>> seed_weights([(7, 1.0, 0.0), (3, 0.5, 0.0)])
    [(7, 1.0), (3, 0.25)]
    """
    return [(row, weight / (1.0 + rank)) for rank, (row, weight, _) in enumerate(seeds)]


def positive_seeds(user: UserState, limit: int) -> list[tuple[int, float, float]]:
    """The user's latest distinct positive events, newest first, as ``(row, weight, time)``.

    >>> user = UserState(capacity=4)
    >>> for row, weight in [(1, 1.0), (2, -1.0), (1, 0.5), (3, 0.8)]:
    ...     user.remember(row, weight, 0.0)
    >>> [row for row, _, _ in positive_seeds(user, 5)]
    [3, 1]
    """
    found: list[tuple[int, float, float]] = []
    rows: set[int] = set()
    for row, weight, at in user.newest_first():
        if weight > 0 and row not in rows:
            rows.add(row)
            found.append((row, weight, at))
            if len(found) >= limit:
                break
    return found


#: Events behind ``recent_skips`` (the session mood feature).
RECENT_SKIP_WINDOW: Final = 5


def recent_skip_share(user: UserState, window: int = RECENT_SKIP_WINDOW) -> float:
    """Share of skips among the user's last ``window`` events (0.5 with none): session mood.

    >>> user = UserState(capacity=8)
    >>> for weight in (1.0, -1.0, -0.5, 1.0):
    ...     user.remember(1, weight, 0.0)
    >>> recent_skip_share(user, window=3)
    0.6666666666666666
    """
    skips = 0
    count = 0
    for _, weight, _ in user.newest_first():
        if count >= window:
            break
        count += 1
        skips += weight < 0
    return skips / count if count else 0.5


def user_context(
    user: UserState, now: float, device: str | None, *, from_list: bool
) -> dict[str, float]:
    """Features that are the same for every item in one request or event.

    >>> sorted(user_context(UserState(capacity=2), 0.0, "tv", from_list=True))
    ['device=tv', 'from_list', 'hour_cos', 'hour_sin', 'last_weight', 'user_skip_rate', 'weekend']
    """
    features = context_features(now, device)
    features["user_skip_rate"] = (user.skips + 1.0) / (user.n_events + 2.0)
    features["last_weight"] = user.last_weight()
    features["from_list"] = 1.0 if from_list else 0.0
    return features


def item_features(
    engine: Engine, user_id: str, user: UserState, row: int, now: float
) -> dict[str, float]:
    """:data:`ITEM_FEATURES` of one item for one user at ``now`` (per event).

    The first entries of :func:`event_features` (what ``learn`` and
    ``predict_skip`` compute per event), by name. They come from
    :func:`item_matrix`, the same code that ranking runs on many items, so what
    the skip model learns from is what it is served.
    """
    vector = event_features(engine, user_id, user, row, now)
    return dict(zip(ITEM_FEATURES, vector[:N_ITEM_FEATURES].tolist(), strict=True))


def event_features(
    engine: Engine, user_id: str, user: UserState, row: int, now: float
) -> np.ndarray:
    """Everything item- and history-dependent the skip model sees of one event, as a vector.

    :data:`ITEM_FEATURES` of ``row`` (the definitions of :func:`item_matrix_of`),
    then ``seen``, ``previous`` and ``recent_skips``: one compiled call
    (:func:`~stream.engine.kernels.event_features`) reading the user's ring
    buffer, the co-occurrence arrays and the item statistics as they are.
    """
    taste = engine.taste
    previous = user.last_outcome(row)
    return kernels.event_features(
        row,
        user.recent_rows,
        user.recent_weights,
        user.n_recent,
        engine.config.cooc_window,
        RECENT_SKIP_WINDOW,
        _NEVER_MET if previous is None else previous,
        *cooccurrence_inputs(engine, now),
        *item_and_taste_inputs(engine, user_id, user, now),
        taste.scale_at(user, now) if len(user.artist_keys) else 0.0,
    )


def item_matrix_of(
    engine: Engine,
    user_id: str,
    user: UserState,
    rows: np.ndarray,
    now: float,
    cooc: np.ndarray,
) -> np.ndarray:
    """:data:`ITEM_FEATURES` of ``rows`` as a ``(len(rows), 11)`` float64 matrix.

    ``cooc`` is the raw co-occurrence sum of each row with the user's seeds, as
    returned by :meth:`Cooccurrence.candidates` for :func:`seed_weights`. The
    engine's arrays go to the compiled :func:`~stream.engine.kernels.item_matrix`
    as they are (no per-call copies, no dense per-user tables).
    """
    taste = engine.taste
    has_taste = len(user.artist_keys) > 0
    return item_matrix(
        rows,
        cooc,
        *item_and_taste_inputs(engine, user_id, user, now),
        1.0 / taste.total(user) if has_taste else 0.0,
        taste.scale_at(user, now) if has_taste else 0.0,
    )


_NO_VECTOR: Final = np.zeros(0, dtype=np.float32)
#: ``previous`` of an item the user never met (the kernel's "not seen").
_NEVER_MET: Final = float("nan")


def cooccurrence_inputs(engine: Engine, now: float) -> tuple[Any, ...]:
    """The co-occurrence arguments both kernels that sum it take, in the same order:
    neighbour lists and strengths with their scale, per-item totals with theirs, damping."""
    cooccurrence = engine.cooccurrence
    return (
        cooccurrence.neighbour_rows,
        cooccurrence.strengths,
        cooccurrence.counts,
        cooccurrence.scale_at(now),
        cooccurrence.totals.values,
        cooccurrence.totals.scale(now),
        float(cooccurrence.damping),
    )


def item_and_taste_inputs(
    engine: Engine, user_id: str, user: UserState, now: float
) -> tuple[Any, ...]:
    """The arguments both feature kernels take in the same order: item statistics,
    MF factors with the user's vector, release dates, artists/genres, the user's taste."""
    items = engine.items
    popularity = engine.popularity
    factors = engine.factors
    size = len(items)
    vector = factors.river.u_latents.get(user_id)
    if vector is None:
        vector = _NO_VECTOR
    elif vector.dtype != np.float32:
        vector = vector.astype(np.float32)
    return (
        popularity.plays.raw(size),
        popularity.plays.scale(now),
        popularity.recent_plays.raw(size),
        popularity.recent_plays.scale(now),
        popularity.skips.raw(size),
        popularity.skips.scale(now),
        popularity.skip_share,
        factors.learned,
        factors.item_bias,
        factors.item_factors,
        vector,
        items.released_at,
        engine.config.new_release_window,
        now,
        items.artist_of,
        items.genres_of,
        copied(user.artist_keys, np.int32),
        copied(user.artist_values, np.float32),
        copied(user.genre_keys, np.int32),
        copied(user.genre_values, np.float32),
        len(items.artists),
        len(items.genres),
    )


def item_columns(
    engine: Engine,
    user_id: str,
    user: UserState,
    rows: np.ndarray,
    now: float,
    cooc: np.ndarray,
) -> dict[str, np.ndarray]:
    """:data:`ITEM_FEATURES` of many items at once, by name (columns of :func:`item_matrix_of`)."""
    matrix = item_matrix_of(engine, user_id, user, rows, now, np.asarray(cooc, dtype=np.float64))
    return {name: matrix[:, i] for i, name in enumerate(ITEM_FEATURES)}
