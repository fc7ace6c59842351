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

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import numpy as np

from stream.engine.signals import context_features
from stream.engine.state import UserState

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


def recent_skip_share(user: UserState, window: int = 5) -> float:
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
    """:data:`ITEM_FEATURES` of one item for one user at ``now`` (scalar path).

    This runs for every event (``learn`` and ``predict_skip``), so it reads the
    sub-models' state directly and looks each thing up once: the same
    definitions as :func:`item_columns`, which the tests hold it to.
    """
    items = engine.items
    popularity = engine.popularity
    factors = engine.factors
    taste = engine.taste
    cooccurrence = engine.cooccurrence

    # Co-occurrence with the user's latest distinct positive plays, newest weighing most;
    # the decay and the damping depend on ``row`` only, so they are applied once.
    raw_cooc = 0.0
    pairs = cooccurrence.pairs
    limit = engine.config.cooc_window
    n_seeds = 0
    met: list[int] = []
    for seed, weight, _ in user.newest_first():
        if weight <= 0 or seed in met:
            continue
        met.append(seed)
        entry = pairs.get(seed)
        if entry is not None:
            neighbours = entry[0]
            if row in neighbours:
                raw_cooc += entry[1][neighbours.index(row)] * weight / (1.0 + n_seeds)
        n_seeds += 1
        if n_seeds >= limit:
            break
    cooc = 0.0
    if raw_cooc:
        cooc = raw_cooc * cooccurrence._scale(now)
        if cooccurrence.damping:
            cooc /= max(cooccurrence.totals.value(row, now=now), 1.0) ** cooccurrence.damping

    mf = 0.0
    mf_bias = 0.0
    if row < len(factors.learned) and factors.learned[row]:
        mf_bias = float(factors.item_bias[row])
        vector = factors.river.u_latents.get(user_id)
        if vector is not None:
            if vector.dtype != np.float32:
                vector = vector.astype(np.float32)
            mf = float(factors.item_factors[row] @ vector)

    plays = popularity.plays.value(row, now=now)
    skips = popularity.skips.value(row, now=now)
    prior = 4.0  # as Popularity.skip_rate
    skip_rate = (skips + prior * popularity.skip_share) / (skips + plays + prior)

    taste_value = relative_artist = artist_signed = genre_signed = 0.0
    artist = int(items.artist_of[row])
    if artist >= 0 and user.artist_keys:
        artist_keys = user.artist_keys
        artist_raw = (
            user.artist_values[artist_keys.index(artist)] if artist in artist_keys else 0.0
        )
        genre_keys = user.genre_keys
        genre_values = user.genre_values
        genre_sum = 0.0
        n_genres = 0
        for genre in items.genres_of[row].tolist():
            if genre >= 0:
                if genre in genre_keys:
                    genre_sum += genre_values[genre_keys.index(genre)]
                n_genres += 1
        genre_mean = genre_sum / max(n_genres, 1)
        total = taste._total(user)
        taste_value = (artist_raw + genre_mean) / total
        relative_artist = artist_raw / total
        scale = taste._scale(user, now)
        artist_signed = _signed_log(artist_raw * scale)
        genre_signed = _signed_log(genre_mean * scale)

    age = now - float(items.released_at[row])
    freshness = math.exp(-age / engine.config.new_release_window) if age >= 0 else 0.0
    return {
        "mf": mf,
        "mf_bias": mf_bias,
        "taste": taste_value,
        "artist": relative_artist,
        "popularity": math.log1p(plays),
        "trending": math.log1p(popularity.recent_plays.value(row, now=now)),
        "item_skip_rate": skip_rate,
        "cooc": math.log1p(cooc),
        "freshness": freshness,
        "artist_signed": artist_signed,
        "genre_signed": genre_signed,
    }


def _signed_log(value: float) -> float:
    """``sign(value) * log1p(|value|)``.

    >>> _signed_log(-math.e + 1.0)
    -1.0
    """
    return math.copysign(math.log1p(abs(value)), value)


def item_columns(
    engine: Engine,
    user_id: str,
    user: UserState,
    rows: np.ndarray,
    now: float,
    cooc: np.ndarray,
) -> dict[str, np.ndarray]:
    """:data:`ITEM_FEATURES` of many items at once (vectorised path).

    ``cooc`` is the raw co-occurrence sum of each row with the user's seeds, as
    returned by :meth:`Cooccurrence.candidates` for :func:`seed_weights`.
    """
    items = engine.items
    popularity = engine.popularity
    factors = engine.factors
    size = len(items)
    plays = popularity.plays.raw(size)[rows] * popularity.plays.scale(now)
    recent = popularity.recent_plays.raw(size)[rows] * popularity.recent_plays.scale(now)
    n = len(rows)
    mf = np.zeros(n)
    mf_bias = np.zeros(n)
    in_range = rows < len(factors.learned)
    known = np.zeros(n, dtype=bool)
    known[in_range] = factors.learned[rows[in_range]]
    if known.any():
        learned_rows = rows[known]
        mf_bias[known] = factors.item_bias[learned_rows]
        vector = factors.river.u_latents.get(user_id)
        if vector is not None:
            mf[known] = factors.item_factors[learned_rows] @ vector.astype(np.float32)
    age = now - items.released_at[rows]
    with np.errstate(invalid="ignore"):
        fresh = age >= 0
    freshness = np.zeros(n)
    freshness[fresh] = np.exp(-age[fresh] / engine.config.new_release_window)
    taste, artist, artist_signed, genre_signed = engine.taste.columns(user, items, rows, now=now)
    return {
        "mf": mf,
        "mf_bias": mf_bias,
        "taste": taste,
        "artist": artist,
        "popularity": np.log1p(plays),
        "trending": np.log1p(recent),
        "item_skip_rate": popularity.skip_rates(rows, now=now),
        "cooc": np.log1p(cooc),
        "freshness": freshness,
        "artist_signed": artist_signed,
        "genre_signed": genre_signed,
    }
