"""Compiled inner loops of ranking and feature building (numba, cached on disk).

Ranking a user's ~300 candidates with numpy costs about a hundred small array
operations, and on arrays that small numpy's fixed cost per call (~1-2 µs)
dominates: the work itself is a few thousand multiply-adds. These kernels do the
same arithmetic in one compiled loop per step, so a ``rank`` costs a handful of
calls instead. They are plain functions of arrays and scalars (no engine
objects), compiled on first use and cached next to this file (``cache=True``),
so a worker pays the compilation once per install, not once per start.

The definitions are those of :mod:`stream.engine.features`: :func:`item_matrix`
is the one implementation of :data:`~stream.engine.features.ITEM_FEATURES`,
used for one item (per event) and for many (per ranking).

>>> import numpy as np
>>> top_k(np.array([0.1, 3.0, -np.inf, 2.0, 3.0]), 3).tolist()
[1, 4, 3]
>>> rows, sums = cooc_sums(np.array([4, 2, 4], dtype=np.int32),
...                        np.array([1.0, 2.0, 3.0], dtype=np.float32),
...                        np.array([2, 1]), np.array([1.0, 0.5]), np.array([1, 0, 2]),
...                        np.zeros(5), 1.0, 1.0, 0.0)
>>> rows.tolist(), sums.tolist()
([2, 4], [2.0, 2.5])
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Columns of :func:`item_matrix`, in the order of ``features.ITEM_FEATURES``.
MF, MF_BIAS, TASTE, ARTIST, POPULARITY, TRENDING, SKIP_RATE, COOC, FRESHNESS = range(9)
ARTIST_SIGNED, GENRE_SIGNED = 9, 10
N_ITEM_FEATURES = 11
#: Pseudo-events at the global skip rate added to an item's own (as Popularity.skip_rate).
SKIP_RATE_PRIOR = 4.0


#: Above this ``k``, :func:`top_k` keeps a heap instead of a sorted buffer.
_INSERTION_MAX_K = 64


@njit(cache=True)
def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first, ties by lower index.

    One pass, no copy, partition or sort of ``scores``: a small ``k`` keeps a
    small sorted buffer; a large one (a chart of a thousand) a heap, sorted at the end.
    """
    n = len(scores)
    k = min(k, n)
    if k > _INSERTION_MAX_K:
        return _top_k_heap(scores, k)
    best_rows = np.empty(max(k, 0), dtype=np.int64)
    best_scores = np.empty(max(k, 0), dtype=np.float64)
    size = 0
    for row in range(n):
        value = float(scores[row])
        if not math.isfinite(value):
            continue
        # Rows arrive in increasing order, so an equal score never displaces a kept row.
        if size == k and (k == 0 or value <= best_scores[k - 1]):
            continue
        position = size if size < k else k - 1
        while position > 0 and best_scores[position - 1] < value:
            if position < k:
                best_scores[position] = best_scores[position - 1]
                best_rows[position] = best_rows[position - 1]
            position -= 1
        best_scores[position] = value
        best_rows[position] = row
        if size < k:
            size += 1
    return best_rows[:size]


@njit(cache=True)
def _worse(score_a: float, row_a: int, score_b: float, row_b: int) -> bool:
    """Whether (score_a, row_a) ranks after (score_b, row_b): lower score, then higher row."""
    return score_a < score_b or (score_a == score_b and row_a > row_b)


@njit(cache=True)
def _sift_down(scores: np.ndarray, rows: np.ndarray, size: int, position: int) -> None:
    # A heap whose top is the worst kept entry.
    while True:
        worst = position
        for child in (2 * position + 1, 2 * position + 2):
            if child < size and _worse(scores[child], rows[child], scores[worst], rows[worst]):
                worst = child
        if worst == position:
            return
        scores[position], scores[worst] = scores[worst], scores[position]
        rows[position], rows[worst] = rows[worst], rows[position]
        position = worst


@njit(cache=True)
def _top_k_heap(scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` for a long ``k``: a heap of the kept entries, worst on top.

    Each score that beats the worst kept one replaces it in ``log k`` steps
    (an insertion into a sorted buffer moves ``k / 2`` entries), then the kept
    entries are sorted once.
    """
    kept_scores = np.empty(k, dtype=np.float64)
    kept_rows = np.empty(k, dtype=np.int64)
    size = 0
    for row in range(len(scores)):
        value = float(scores[row])
        if not math.isfinite(value):
            continue
        if size < k:
            # Sift up.
            position = size
            kept_scores[position] = value
            kept_rows[position] = row
            size += 1
            while position > 0:
                up = (position - 1) // 2
                if not _worse(value, row, kept_scores[up], kept_rows[up]):
                    break
                kept_scores[position], kept_rows[position] = kept_scores[up], kept_rows[up]
                kept_scores[up], kept_rows[up] = value, row
                position = up
        elif value > kept_scores[0]:
            # Rows arrive in increasing order: an equal score never beats a kept row.
            kept_scores[0] = value
            kept_rows[0] = row
            _sift_down(kept_scores, kept_rows, size, 0)
    # Best first, ties by lower row: sort by row, then stably by descending score.
    by_row = np.argsort(kept_rows[:size])
    rows = kept_rows[:size][by_row]
    order = np.argsort(-kept_scores[:size][by_row], kind="mergesort")
    return rows[order]


@njit(cache=True)
def rows_by_genre(ranked: np.ndarray, genres_of: np.ndarray, n_genres: int, depth: int) -> tuple:
    """The first ``depth`` rows of ``ranked`` of each genre, in ``ranked`` order.

    Returns them one genre after the other and where each genre starts
    (``n_genres + 1`` offsets): one pass over ``ranked`` instead of one per genre.
    """
    table = np.empty((n_genres, depth), dtype=np.int64)
    sizes = np.zeros(n_genres, dtype=np.int64)
    for row in ranked:
        for slot in range(genres_of.shape[1]):
            genre = genres_of[row, slot]
            if genre < 0 or genre >= n_genres or sizes[genre] >= depth:
                continue
            repeated = False
            for other in range(slot):
                if genres_of[row, other] == genre:
                    repeated = True
            if not repeated:
                table[genre, sizes[genre]] = row
                sizes[genre] += 1
    starts = np.zeros(n_genres + 1, dtype=np.int64)
    for genre in range(n_genres):
        starts[genre + 1] = starts[genre] + sizes[genre]
    rows = np.empty(starts[n_genres], dtype=np.int64)
    for genre in range(n_genres):
        rows[starts[genre] : starts[genre + 1]] = table[genre, : sizes[genre]]
    return rows, starts


@njit(cache=True)
def mf_top_k(
    dots: np.ndarray,
    offset: np.ndarray,
    penalty: np.ndarray,
    seen: np.ndarray,
    learned: int,
    k: int,
) -> np.ndarray:
    """Finish MF scores in place and return the ``k`` best rows.

    ``dots[:learned]`` holds ``item_factors @ vector`` (from BLAS); each row
    becomes ``dot + offset + penalty``, ``-inf`` for rows in sorted ``seen`` and
    for rows at or beyond ``learned``. The result is :func:`top_k` of ``dots``
    (a heap past 64 rows: Discover's pool of 200 made a sorted buffer move ~100
    entries per insertion, 86 µs of a 20,000-item list).
    """
    size = len(dots)
    cursor = 0
    n_seen = len(seen)
    for row in range(size):
        if row >= learned:
            dots[row] = -np.inf
            continue
        while cursor < n_seen and seen[cursor] < row:
            cursor += 1
        if cursor < n_seen and seen[cursor] == row:
            dots[row] = -np.inf
            continue
        dots[row] = dots[row] + offset[row] + penalty[row]
    return top_k(dots, k)


@njit(cache=True)
def taste_scores(
    rows: np.ndarray,
    artist_of: np.ndarray,
    genres_of: np.ndarray,
    artist_keys: np.ndarray,
    artist_values: np.ndarray,
    genre_keys: np.ndarray,
    genre_values: np.ndarray,
    n_artists: int,
    n_genres: int,
    scale: float,
) -> np.ndarray:
    """Artist affinity plus mean genre affinity of each row, times ``scale`` (float32)."""
    artists = _dense(artist_keys, artist_values, n_artists)
    genres = _dense(genre_keys, genre_values, n_genres)
    out = np.empty(len(rows), dtype=np.float32)
    for i in range(len(rows)):
        row = rows[i]
        out[i] = (artists[artist_of[row]] + _genre_mean(genres_of, row, genres)) * scale
    return out


@njit(cache=True)
def cooc_sums(
    neighbour_rows: np.ndarray,
    strengths: np.ndarray,
    lengths: np.ndarray,
    seed_weights: np.ndarray,
    order: np.ndarray,
    totals: np.ndarray,
    totals_scale: float,
    scale: float,
    damping: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour strengths summed over weighted seeds: distinct rows (sorted) and sums.

    ``neighbour_rows`` / ``strengths`` are the seeds' neighbour lists one after the
    other (``lengths`` entries each); every strength is multiplied by its seed's
    weight and ``scale``, then divided by ``max(total, 1) ** damping`` of the
    neighbour (``totals`` read at ``totals_scale``). ``order`` sorts
    ``neighbour_rows`` (numpy's stable sort of small int arrays is several times
    faster than the compiled one, so the caller passes it).
    """
    n = len(neighbour_rows)
    values = np.empty(n, dtype=np.float64)
    start = 0
    for seed in range(len(lengths)):
        weight = seed_weights[seed] * scale
        for i in range(start, start + lengths[seed]):
            value = strengths[i] * weight
            if damping != 0.0:
                other = neighbour_rows[i]
                total = totals[other] * totals_scale if other < len(totals) else 0.0
                value /= max(total, 1.0) ** damping
            values[i] = value
        start += lengths[seed]
    rows = np.empty(n, dtype=np.int64)
    sums = np.empty(n, dtype=np.float64)
    size = 0
    for i in order:
        row = neighbour_rows[i]
        if size and rows[size - 1] == row:
            sums[size - 1] += values[i]
        else:
            rows[size] = row
            sums[size] = values[i]
            size += 1
    return rows[:size], sums[:size]


@njit(cache=True)
def unseen_candidates(rows: np.ndarray, seen: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Distinct rows of sorted ``rows`` that are active and not in sorted ``seen``.

    (numpy sorts the small candidate arrays several times faster than compiled code.)
    """
    out = np.empty(len(rows), dtype=np.int64)
    size = 0
    cursor = 0
    n_seen = len(seen)
    previous = -1
    for row in rows:
        if row == previous:
            continue
        previous = row
        # Both are sorted: advance through ``seen`` instead of searching it.
        while cursor < n_seen and seen[cursor] < row:
            cursor += 1
        if cursor < n_seen and seen[cursor] == row:
            continue
        if active[row]:
            out[size] = row
            size += 1
    return out[:size]


@njit(cache=True)
def lookup(rows: np.ndarray, sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` of each row in ``sorted_keys`` (aligned), 0 where a row is absent."""
    out = np.zeros(len(rows), dtype=np.float64)
    if len(sorted_keys) == 0:
        return out
    positions = np.searchsorted(sorted_keys, rows)
    for i in range(len(rows)):
        position = positions[i]
        if position < len(sorted_keys) and sorted_keys[position] == rows[i]:
            out[i] = values[position]
    return out


@njit(cache=True)
def _signed_log(value: float) -> float:
    # log(1 + x) rather than log1p: half the cost, and x is never tiny enough to matter.
    return math.copysign(math.log(1.0 + abs(value)), value)


@njit(cache=True, fastmath=True)
def _dot(matrix: np.ndarray, row: int, vector: np.ndarray) -> float:
    # fastmath lets LLVM reorder the sum into SIMD lanes (float32 rounding differs a little).
    total = np.float32(0.0)
    for f in range(len(vector)):
        total += matrix[row, f] * vector[f]
    return total


@njit(cache=True)
def _dense(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    # One extra slot at the end absorbs the -1 "no artist / no genre" index.
    table = np.zeros(size + 1, dtype=np.float64)
    for i in range(len(keys)):
        table[keys[i]] = values[i]
    return table


@njit(cache=True)
def _genre_mean(genres_of: np.ndarray, row: int, genre_table: np.ndarray) -> float:
    """Mean of ``genre_table`` over the item's genres (0 for an item without genres)."""
    total = 0.0
    count = 0
    for slot in range(genres_of.shape[1]):
        genre = genres_of[row, slot]
        if genre >= 0:
            total += genre_table[genre]
            count += 1
    return total / max(count, 1)


@njit(cache=True)
def item_matrix(
    rows: np.ndarray,
    cooc: np.ndarray,
    plays: np.ndarray,
    plays_scale: float,
    recent: np.ndarray,
    recent_scale: float,
    skips: np.ndarray,
    skips_scale: float,
    skip_share: float,
    learned: np.ndarray,
    item_bias: np.ndarray,
    item_factors: np.ndarray,
    user_vector: np.ndarray,
    released_at: np.ndarray,
    release_window: float,
    now: float,
    artist_of: np.ndarray,
    genres_of: np.ndarray,
    artist_keys: np.ndarray,
    artist_values: np.ndarray,
    genre_keys: np.ndarray,
    genre_values: np.ndarray,
    n_artists: int,
    n_genres: int,
    inverse_total: float,
    taste_scale: float,
) -> np.ndarray:
    """One row of the 11 item features per entry of ``rows`` (see ``ITEM_FEATURES``).

    ``cooc`` is each row's raw co-occurrence sum with the user's seeds; the
    popularity counters are raw forward-decayed arrays read at their scale; an
    empty ``user_vector`` means MF does not know the user; empty ``artist_keys``
    means no taste profile.
    """
    n = len(rows)
    out = np.zeros((n, 11), dtype=np.float64)
    n_learned = len(learned)
    has_vector = len(user_vector) > 0
    has_taste = len(artist_keys) > 0
    # Tables over every artist and genre pay off for many rows; a few look their keys up.
    use_tables = has_taste and n > _LOOKUP_MAX_ROWS
    if use_tables:
        artist_table = _dense(artist_keys, artist_values, n_artists)
        genre_table = _dense(genre_keys, genre_values, n_genres)
    else:
        artist_table = genre_table = np.zeros(1, dtype=np.float64)
    for i in range(n):
        row = rows[i]
        if row < n_learned and learned[row]:
            out[i, 1] = item_bias[row]
            if has_vector:
                out[i, 0] = _dot(item_factors, row, user_vector)
        row_plays = plays[row] * plays_scale
        row_skips = skips[row] * skips_scale
        out[i, 4] = math.log(1.0 + row_plays)
        out[i, 5] = math.log(1.0 + recent[row] * recent_scale)
        out[i, 6] = (row_skips + SKIP_RATE_PRIOR * skip_share) / (
            row_skips + row_plays + SKIP_RATE_PRIOR
        )
        if cooc[i] != 0.0:
            out[i, 7] = math.log(1.0 + cooc[i])
        age = now - released_at[row]
        if age >= 0.0:  # False for NaN: no release date, no freshness
            out[i, 8] = math.exp(-age / release_window)
        artist = artist_of[row]
        if has_taste and artist >= 0:
            if use_tables:
                artist_raw = artist_table[artist]
                genre_mean = _genre_mean(genres_of, row, genre_table)
            else:
                artist_raw = _lookup_value(artist_keys, artist_values, artist)
                genre_mean = _genre_mean_of_keys(genres_of, row, genre_keys, genre_values)
            out[i, 2] = (artist_raw + genre_mean) * inverse_total
            out[i, 3] = artist_raw * inverse_total
            if artist_raw != 0.0:
                out[i, 9] = _signed_log(artist_raw * taste_scale)
            if genre_mean != 0.0:
                out[i, 10] = _signed_log(genre_mean * taste_scale)
    return out


#: Up to this many rows, :func:`item_matrix` looks taste keys up instead of building tables.
_LOOKUP_MAX_ROWS = 8


@njit(cache=True)
def _lookup_value(keys: np.ndarray, values: np.ndarray, key: int) -> float:
    """``values`` at ``key`` in ``keys`` (0 where absent; a few dozen entries, no table)."""
    for i in range(len(keys)):
        if keys[i] == key:
            return float(values[i])
    return 0.0


@njit(cache=True)
def _genre_mean_of_keys(
    genres_of: np.ndarray, row: int, genre_keys: np.ndarray, genre_values: np.ndarray
) -> float:
    """:func:`_genre_mean` with the genre values looked up in ``genre_keys``."""
    total = 0.0
    count = 0
    for slot in range(genres_of.shape[1]):
        genre = genres_of[row, slot]
        if genre >= 0:
            total += _lookup_value(genre_keys, genre_values, genre)
            count += 1
    return total / max(count, 1)


@njit(cache=True)
def top_picks_score(
    features: np.ndarray,
    mf_blend: float,
    cooc_blend: float,
    taste_blend: float,
    popularity_blend: float,
    skip_coefficients: np.ndarray,
    skip_intercept: float,
    play_through_weight: float,
) -> np.ndarray:
    """Blend of MF, co-occurrence, taste and popularity plus weighted P(play-through).

    Co-occurrence and popularity are taken relative to the best candidate; the
    skip model's log-odds are ``features @ skip_coefficients + skip_intercept``
    (a zero ``play_through_weight`` leaves the skip model out).
    """
    n = features.shape[0]
    cooc_top = 0.0
    popularity_top = 0.0
    for i in range(n):
        cooc_top = max(cooc_top, features[i, 7])
        popularity_top = max(popularity_top, features[i, 4])
    cooc_norm = 1.0 / cooc_top if cooc_top > 0.0 else 1.0
    popularity_norm = 1.0 / popularity_top if popularity_top > 0.0 else 1.0
    score = np.empty(n, dtype=np.float64)
    for i in range(n):
        value = (
            mf_blend * (features[i, 0] + features[i, 1])
            + cooc_blend * features[i, 7] * cooc_norm
            + taste_blend * features[i, 2]
            + popularity_blend * features[i, 4] * popularity_norm
        )
        if play_through_weight != 0.0:
            logit = skip_intercept
            for f in range(features.shape[1]):
                logit += features[i, f] * skip_coefficients[f]
            logit = min(max(logit, -500.0), 500.0)
            value += play_through_weight * (1.0 - 1.0 / (1.0 + math.exp(-logit)))
        score[i] = value
    return score


@njit(cache=True)
def _bump_pair(
    neighbours: np.ndarray,
    strengths: np.ndarray,
    counts: np.ndarray,
    row: int,
    other: int,
    amount: float,
    max_neighbours: int,
) -> None:
    # Add ``amount`` to ``other`` in ``row``'s neighbour list. A list holds up to
    # ``width - 1`` entries; the one that fills the last slot triggers a prune to the
    # ``max_neighbours`` strongest (ties: lower row), amortised over the slack.
    n = counts[row]
    for j in range(n):
        if neighbours[row, j] == other:
            strengths[row, j] += amount
            return
    neighbours[row, n] = other
    strengths[row, n] = amount
    n += 1
    if n < neighbours.shape[1]:
        counts[row] = n
        return
    # Insertion sort of the (few dozen) entries by (-strength, row), in place.
    for i in range(1, n):
        key_row = neighbours[row, i]
        key_value = strengths[row, i]
        j = i - 1
        while j >= 0 and (
            strengths[row, j] < key_value
            or (strengths[row, j] == key_value and neighbours[row, j] > key_row)
        ):
            neighbours[row, j + 1] = neighbours[row, j]
            strengths[row, j + 1] = strengths[row, j]
            j -= 1
        neighbours[row, j + 1] = key_row
        strengths[row, j + 1] = key_value
    counts[row] = max_neighbours


@njit(cache=True)
def cooc_learn(
    neighbours: np.ndarray,
    strengths: np.ndarray,
    counts: np.ndarray,
    row: int,
    weight: float,
    factor: float,
    at: float,
    recent_rows: np.ndarray,
    recent_weights: np.ndarray,
    recent_times: np.ndarray,
    n_recent: int,
    window: int,
    session_gap: float,
    max_neighbours: int,
    journal: np.ndarray,
    journal_n: int,
) -> int:
    """Pair a positive event on ``row`` with the user's previous events, in place.

    The previous events are a ring buffer (``n_recent`` ever written, the newest
    at ``(n_recent - 1) % len(recent_rows)``), walked newest first: the first
    ``window`` positive ones other than ``row`` pair with it, a pair across a
    silence longer than ``session_gap`` counts half, and farther predecessors
    less (see :class:`~stream.engine.cooccurrence.Cooccurrence`). ``factor`` is
    the forward-decay factor of ``at``.

    With ``journal_n >= 0``, each pair is also written to row ``journal_n`` onwards
    of ``journal`` as ``(row, other, amount, at)`` (the amount before ``factor``,
    added to both directions); the caller guarantees ``window`` free rows. Returns
    the new journal length (``journal_n`` unchanged when negative).
    """
    capacity = len(recent_rows)
    paired = 0
    later_time = at
    session_factor = 1.0
    for position in range(n_recent - 1, max(n_recent - capacity, 0) - 1, -1):
        if paired >= window:
            break
        slot = position % capacity
        other = recent_rows[slot]
        other_weight = float(recent_weights[slot])
        other_time = recent_times[slot]
        if later_time - other_time > session_gap:
            session_factor = 0.5
        later_time = other_time
        if other_weight <= 0.0 or other == row:
            continue
        amount = min(weight, other_weight) * session_factor / (1.0 + 0.5 * paired)
        _bump_pair(neighbours, strengths, counts, other, row, amount * factor, max_neighbours)
        _bump_pair(neighbours, strengths, counts, row, other, amount * factor, max_neighbours)
        if journal_n >= 0:
            journal[journal_n, 0] = row
            journal[journal_n, 1] = other
            journal[journal_n, 2] = amount
            journal[journal_n, 3] = at
            journal_n += 1
        paired += 1
    return journal_n


@njit(cache=True)
def cooc_add_pairs(
    neighbours: np.ndarray,
    strengths: np.ndarray,
    counts: np.ndarray,
    firsts: np.ndarray,
    seconds: np.ndarray,
    amounts: np.ndarray,
    max_neighbours: int,
) -> None:
    """Add ``amounts[i]`` to the pair ``(firsts[i], seconds[i])`` in both directions.

    The same per-pair update as :func:`cooc_learn` (``amounts`` already carry the
    forward-decay factor), for pair increments learned elsewhere.
    """
    for i in range(len(firsts)):
        first = firsts[i]
        second = seconds[i]
        amount = amounts[i]
        _bump_pair(neighbours, strengths, counts, second, first, amount, max_neighbours)
        _bump_pair(neighbours, strengths, counts, first, second, amount, max_neighbours)


#: Entries of :func:`event_features` after the item features.
SEEN, PREVIOUS, RECENT_SKIPS = N_ITEM_FEATURES, N_ITEM_FEATURES + 1, N_ITEM_FEATURES + 2


@njit(cache=True)
def event_features(
    row: int,
    recent_rows: np.ndarray,
    recent_weights: np.ndarray,
    n_recent: int,
    cooc_window: int,
    skip_window: int,
    previous: float,
    neighbour_rows: np.ndarray,
    strengths: np.ndarray,
    counts: np.ndarray,
    cooc_scale: float,
    cooc_totals: np.ndarray,
    cooc_totals_scale: float,
    damping: float,
    plays: np.ndarray,
    plays_scale: float,
    recent: np.ndarray,
    recent_scale: float,
    skips: np.ndarray,
    skips_scale: float,
    skip_share: float,
    learned: np.ndarray,
    item_bias: np.ndarray,
    item_factors: np.ndarray,
    user_vector: np.ndarray,
    released_at: np.ndarray,
    release_window: float,
    now: float,
    artist_of: np.ndarray,
    genres_of: np.ndarray,
    artist_keys: np.ndarray,
    artist_values: np.ndarray,
    genre_keys: np.ndarray,
    genre_values: np.ndarray,
    n_artists: int,
    n_genres: int,
    taste_scale: float,
) -> np.ndarray:
    """The per-event features of one item for one user, in one call.

    Entries ``0 .. N_ITEM_FEATURES - 1`` are :func:`item_matrix` of ``row``
    (which looks one item's artist and genres up in the user's affinities
    instead of building tables over every artist and genre); then
    whether the user has met the item (:data:`SEEN`), the user's latest signal
    on it (:data:`PREVIOUS`: ``previous``, NaN for an item never met) and the
    share of skips among the user's last
    ``skip_window`` events (:data:`RECENT_SKIPS`, 0.5 with none). The
    co-occurrence is summed over the user's latest ``cooc_window`` distinct
    positive items (newest weighing most), read from the ring buffer and the
    neighbour arrays directly: no per-event Python walk of the history.
    """
    out = np.zeros(N_ITEM_FEATURES + 3, dtype=np.float64)
    capacity = len(recent_rows)
    oldest = max(n_recent - capacity, 0)
    met = np.empty(cooc_window, dtype=np.int64)
    n_seeds = 0
    raw_cooc = 0.0
    n_last = 0
    n_skips = 0
    for position in range(n_recent - 1, oldest - 1, -1):
        slot = position % capacity
        weight = float(recent_weights[slot])
        if n_last < skip_window:
            n_last += 1
            if weight < 0.0:
                n_skips += 1
        if n_seeds >= cooc_window:
            if n_last >= skip_window:
                break
            continue
        if weight <= 0.0:
            continue
        seed = recent_rows[slot]
        repeated = False
        for s in range(n_seeds):
            if met[s] == seed:
                repeated = True
                break
        if repeated:
            continue
        met[n_seeds] = seed
        if seed < len(counts):
            for j in range(counts[seed]):
                if neighbour_rows[seed, j] == row:
                    raw_cooc += float(strengths[seed, j]) * weight / (1.0 + n_seeds)
                    break
        n_seeds += 1
    cooc = 0.0
    if raw_cooc != 0.0:
        cooc = raw_cooc * cooc_scale
        if damping != 0.0:
            total = cooc_totals[row] * cooc_totals_scale if row < len(cooc_totals) else 0.0
            cooc /= max(total, 1.0) ** damping
    out[RECENT_SKIPS] = n_skips / n_last if n_last else 0.5
    if previous == previous:  # NaN: never met
        out[SEEN] = 1.0
        out[PREVIOUS] = previous
    inverse_total = 0.0
    if len(artist_keys) > 0:
        positive = 0.0
        for value in artist_values:
            if value > 0:
                positive += float(value)
        inverse_total = 1.0 / max(positive, 1e-12)
    rows = np.empty(1, dtype=np.int64)
    rows[0] = row
    cooc_column = np.empty(1, dtype=np.float64)
    cooc_column[0] = cooc
    features = item_matrix(
        rows,
        cooc_column,
        plays,
        plays_scale,
        recent,
        recent_scale,
        skips,
        skips_scale,
        skip_share,
        learned,
        item_bias,
        item_factors,
        user_vector,
        released_at,
        release_window,
        now,
        artist_of,
        genres_of,
        artist_keys,
        artist_values,
        genre_keys,
        genre_values,
        n_artists,
        n_genres,
        inverse_total,
        taste_scale,
    )
    out[:N_ITEM_FEATURES] = features[0]
    return out


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_30, _SHIFT_27, _SHIFT_31, _SHIFT_11 = (np.uint64(n) for n in (30, 27, 31, 11))


@njit(cache=True)
def _split_mix(state: np.uint64) -> tuple[np.uint64, float]:
    # One SplitMix64 step: the next state and 53 of its output bits as a float in (0, 1].
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _SHIFT_30)) * _MIX_1
    z = (z ^ (z >> _SHIFT_27)) * _MIX_2
    z = z ^ (z >> _SHIFT_31)
    return state, (float(z >> _SHIFT_11) + 1.0) / 9007199254740992.0


@njit(cache=True)
def hashed_normals(key: np.uint64, n: int, sigma: float) -> np.ndarray:
    """``n`` float32 draws of N(0, ``sigma``²), a pure function of the 64-bit ``key``.

    SplitMix64 from ``key`` feeds Box-Muller: the same key gives the same vector
    in every process (the initial latent factors of an item, whichever worker
    creates them).
    """
    out = np.empty(n, dtype=np.float32)
    state = np.uint64(key)
    for i in range(0, n, 2):
        state, first = _split_mix(state)
        state, second = _split_mix(state)
        radius = math.sqrt(-2.0 * math.log(first)) * sigma
        angle = 2.0 * math.pi * second
        out[i] = radius * math.cos(angle)
        if i + 1 < n:
            out[i + 1] = radius * math.sin(angle)
    return out


@njit(cache=True)
def _ranked_keys(keys: np.ndarray, values: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` first entries by (-value, key), in that order."""
    n = len(keys)
    limit = min(limit, n)
    best = np.empty(limit, dtype=np.int64)
    size = 0
    for i in range(n):
        value = values[i]
        key = keys[i]
        # Insertion into a small sorted buffer (profiles hold a few dozen entries).
        position = size
        while position > 0 and (
            values[best[position - 1]] < value
            or (values[best[position - 1]] == value and keys[best[position - 1]] > key)
        ):
            position -= 1
        if position >= limit:
            continue
        last = min(size, limit - 1)
        for j in range(last, position, -1):
            best[j] = best[j - 1]
        best[position] = i
        if size < limit:
            size += 1
    return best[:size]


@njit(cache=True)
def _before(score_a: float, row_a: int, score_b: float, row_b: int) -> bool:
    """Whether (score_a, row_a) ranks before (score_b, row_b): higher score, then lower row.

    NaN ranks after every number (as ``np.lexsort`` of ``-score`` puts it).
    """
    if score_a != score_a:
        return score_b != score_b and row_a < row_b
    if score_b != score_b:
        return True
    return score_a > score_b or (score_a == score_b and row_a < row_b)


@njit(cache=True)
def top_picks(
    recent_rows: np.ndarray,
    recent_weights: np.ndarray,
    n_recent: int,
    cooc_window: int,
    seen: np.ndarray,
    active: np.ndarray,
    mf_top: np.ndarray,
    popular: np.ndarray,
    artist_tails: np.ndarray,
    artist_tail_sizes: np.ndarray,
    n_artist_sources: int,
    genre_rows: np.ndarray,
    genre_starts: np.ndarray,
    genre_depth: int,
    n_genre_sources: int,
    neighbour_rows: np.ndarray,
    strengths: np.ndarray,
    counts: np.ndarray,
    cooc_scale: float,
    cooc_totals: np.ndarray,
    cooc_totals_scale: float,
    damping: float,
    stamps: np.ndarray,
    tag: int,
    cooc_scratch: np.ndarray,
    seed_scratch: np.ndarray,
    best_scratch: np.ndarray,
    plays: np.ndarray,
    plays_scale: float,
    recent: np.ndarray,
    recent_scale: float,
    skips: np.ndarray,
    skips_scale: float,
    skip_share: float,
    learned: np.ndarray,
    item_bias: np.ndarray,
    item_factors: np.ndarray,
    user_vector: np.ndarray,
    released_at: np.ndarray,
    release_window: float,
    now: float,
    artist_of: np.ndarray,
    genres_of: np.ndarray,
    artist_keys: np.ndarray,
    artist_values: np.ndarray,
    genre_keys: np.ndarray,
    genre_values: np.ndarray,
    n_artists: int,
    n_genres: int,
    inverse_total: float,
    taste_scale: float,
    mf_blend: float,
    cooc_blend: float,
    taste_blend: float,
    popularity_blend: float,
    skip_coefficients: np.ndarray,
    skip_intercept: float,
    play_through_weight: float,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top picks of one user in one call: candidates, features, scores and the best ``k``.

    Candidates are the distinct active rows not in sorted ``seen`` among: the
    co-occurrence neighbours of the user's latest ``cooc_window`` distinct
    positive events (read from the ring buffer, the newest weighing most), the
    ``popular`` chart, the ``mf_top`` rows, the last items of the user's first
    ``n_artist_sources`` artists by affinity (``artist_tails`` rows, one per
    artist) and the first ``genre_depth`` rows of the user's first
    ``n_genre_sources`` genres (``genre_rows`` split at ``genre_starts``), only
    artists and genres with a positive affinity. Each gets :func:`item_matrix`
    and :func:`top_picks_score` (the arithmetic of :func:`cooc_sums`,
    :func:`unseen_candidates` and :func:`lookup` before them, fused).

    ``stamps`` (an int32 array over rows, ``< tag`` everywhere) marks rows seen
    (``tag``) and taken (``tag + 1``) without clearing per call; the three
    scratch arrays hold, per taken row, its co-occurrence sum, its strongest seed
    and that seed's strength.

    Returns the candidate rows (in no particular order), their scores, their
    co-occurrence and taste features, the seed each candidate co-occurs with
    most (``-1`` for none: "Often played with" reasons) and the positions of the
    ``k`` best candidates, best first (higher score, then lower row).
    """
    n_cap = len(stamps)
    for i in range(len(seen)):
        if seen[i] < n_cap:
            stamps[seen[i]] = tag
    taken = tag + 1
    size_limit = len(mf_top) + len(popular) + n_artist_sources * artist_tails.shape[1]
    size_limit += n_genre_sources * genre_depth
    # Co-occurrence seeds: the newest distinct positive events.
    capacity = len(recent_rows)
    oldest = max(n_recent - capacity, 0)
    seeds = np.empty(cooc_window, dtype=np.int64)
    seed_weight = np.empty(cooc_window, dtype=np.float64)
    n_seeds = 0
    for position in range(n_recent - 1, oldest - 1, -1):
        if n_seeds >= cooc_window:
            break
        slot = position % capacity
        weight = float(recent_weights[slot])
        if weight <= 0.0:
            continue
        seed = recent_rows[slot]
        repeated = False
        for s in range(n_seeds):
            if seeds[s] == seed:
                repeated = True
                break
        if repeated:
            continue
        seeds[n_seeds] = seed
        seed_weight[n_seeds] = weight / (1.0 + n_seeds)
        n_seeds += 1
    for s in range(n_seeds):
        if seeds[s] < len(counts):
            size_limit += counts[seeds[s]]
    rows = np.empty(size_limit, dtype=np.int64)
    n = 0
    for s in range(n_seeds):
        seed = seeds[s]
        if seed >= len(counts):
            continue
        weight = seed_weight[s] * cooc_scale
        for j in range(counts[seed]):
            other = neighbour_rows[seed, j]
            strength = strengths[seed, j]
            value = strength * weight
            if damping != 0.0:
                total = cooc_totals[other] * cooc_totals_scale if other < len(cooc_totals) else 0.0
                value /= max(total, 1.0) ** damping
            if other >= n_cap or stamps[other] == tag or not active[other]:
                continue
            if stamps[other] != taken:
                stamps[other] = taken
                rows[n] = other
                n += 1
                cooc_scratch[other] = value
                seed_scratch[other] = seed
                best_scratch[other] = strength
            else:
                cooc_scratch[other] += value
                if strength > best_scratch[other]:
                    seed_scratch[other] = seed
                    best_scratch[other] = strength
    n_cooc = n
    for row in popular:
        if row < n_cap and stamps[row] < tag and active[row]:
            stamps[row] = taken
            rows[n] = row
            n += 1
    for row in mf_top:
        if row < n_cap and stamps[row] < tag and active[row]:
            stamps[row] = taken
            rows[n] = row
            n += 1
    if n_artist_sources > 0:
        order = _ranked_keys(artist_keys, artist_values, n_artist_sources)
        for position in order:
            if artist_values[position] <= 0:
                continue
            artist = artist_keys[position]
            if artist >= len(artist_tail_sizes):
                continue
            for j in range(artist_tail_sizes[artist]):
                row = artist_tails[artist, j]
                if row < n_cap and stamps[row] < tag and active[row]:
                    stamps[row] = taken
                    rows[n] = row
                    n += 1
    if n_genre_sources > 0:
        order = _ranked_keys(genre_keys, genre_values, n_genre_sources)
        for position in order:
            genre = genre_keys[position]
            if genre_values[position] <= 0 or genre + 1 >= len(genre_starts):
                continue
            start = genre_starts[genre]
            end = min(genre_starts[genre + 1], start + genre_depth)
            for j in range(start, end):
                row = genre_rows[j]
                if row < n_cap and stamps[row] < tag and active[row]:
                    stamps[row] = taken
                    rows[n] = row
                    n += 1
    rows = rows[:n]
    cooc = np.zeros(n, dtype=np.float64)
    best_seed = np.full(n, -1, dtype=np.int64)
    for i in range(n_cooc):
        cooc[i] = cooc_scratch[rows[i]]
        if best_scratch[rows[i]] > 0.0:
            best_seed[i] = seed_scratch[rows[i]]
    features = item_matrix(
        rows,
        cooc,
        plays,
        plays_scale,
        recent,
        recent_scale,
        skips,
        skips_scale,
        skip_share,
        learned,
        item_bias,
        item_factors,
        user_vector,
        released_at,
        release_window,
        now,
        artist_of,
        genres_of,
        artist_keys,
        artist_values,
        genre_keys,
        genre_values,
        n_artists,
        n_genres,
        inverse_total,
        taste_scale,
    )
    score = top_picks_score(
        features,
        mf_blend,
        cooc_blend,
        taste_blend,
        popularity_blend,
        skip_coefficients,
        skip_intercept,
        play_through_weight,
    )
    # The best k, best first: insertion into a small sorted buffer.
    k = min(k, n)
    best = np.empty(k, dtype=np.int64)
    kept = 0
    for i in range(n):
        if k == 0:
            break
        if kept == k and not _before(score[i], rows[i], score[best[k - 1]], rows[best[k - 1]]):
            continue
        position = kept if kept < k else k - 1
        while position > 0 and _before(
            score[i], rows[i], score[best[position - 1]], rows[best[position - 1]]
        ):
            best[position] = best[position - 1]
            position -= 1
        best[position] = i
        if kept < k:
            kept += 1
    return rows, score, features[:, COOC].copy(), features[:, TASTE].copy(), best_seed, best


@njit(cache=True)
def release_table(
    candidates: np.ndarray,
    candidate_released_at: np.ndarray,
    active: np.ndarray,
    now: float,
    window: float,
    artist_of: np.ndarray,
    genres_of: np.ndarray,
    artist_keys: np.ndarray,
    artist_values: np.ndarray,
    genre_keys: np.ndarray,
    genre_values: np.ndarray,
    n_artists: int,
    n_genres: int,
    taste_scale: float,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best active ``candidates`` released within ``window`` before ``now``.

    ``candidate_released_at`` holds the candidates' release dates (aligned).

    Each scores its taste affinity (:func:`taste_scores`, no affinity when
    ``artist_keys`` is empty) plus ``0.1`` times its freshness; returns rows,
    scores and affinities, best first (ties: the earlier candidate), in one pass
    and one selection instead of a mask, a gather and a taste call each.
    """
    has_taste = len(artist_keys) > 0
    if has_taste:
        artist_table = _dense(artist_keys, artist_values, n_artists)
        genre_table = _dense(genre_keys, genre_values, n_genres)
    else:
        artist_table = genre_table = np.zeros(1, dtype=np.float64)
    n = len(candidates)
    rows = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float64)
    affinity = np.zeros(n, dtype=np.float64)
    size = 0
    oldest = now - window
    for i in range(n):
        released = candidate_released_at[i]
        if not (released <= now and released >= oldest):
            continue
        row = candidates[i]
        if not active[row]:
            continue
        value = 0.0
        if has_taste:
            # float32, as taste_scores stores it.
            value = float(
                np.float32(
                    (artist_table[artist_of[row]] + _genre_mean(genres_of, row, genre_table))
                    * taste_scale
                )
            )
        rows[size] = row
        affinity[size] = value
        scores[size] = value + 0.1 * (1.0 - (now - released) / window)
        size += 1
    order = top_k(scores[:size], k)
    return rows[order], scores[order], affinity[order]


@njit(cache=True)
def scored_neighbours(
    neighbour_rows: np.ndarray,
    strengths: np.ndarray,
    counts: np.ndarray,
    row: int,
    scale: float,
    totals: np.ndarray,
    totals_scale: float,
    damping: float,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` neighbours of ``row``, strongest first (ties: lower row), and their scores.

    The arithmetic of ``Cooccurrence.neighbours`` in numpy, step for step: each
    stored strength read at ``scale`` in float32, divided by the neighbour's
    ``max(total, 1) ** damping`` (a square root for 0.5, as numpy computes it)
    and rounded back to float32.
    """
    n = counts[row] if row < len(counts) else 0
    rows = np.empty(n, dtype=np.int64)
    values = np.empty(n, dtype=np.float32)
    scale32 = np.float32(scale)
    for j in range(n):
        other = neighbour_rows[row, j]
        value = strengths[row, j] * scale32
        if damping != 0.0:
            total = max(float(totals[other]) * totals_scale, 1.0)
            divisor = math.sqrt(total) if damping == 0.5 else total**damping
            value = np.float32(float(value) / divisor)
        # Insertion by (-value, row): the lists hold a few dozen entries.
        position = j
        while position > 0 and (
            values[position - 1] < value
            or (values[position - 1] == value and rows[position - 1] > other)
        ):
            rows[position] = rows[position - 1]
            values[position] = values[position - 1]
            position -= 1
        rows[position] = other
        values[position] = value
    k = min(k, n)
    return rows[:k], values[:k]
