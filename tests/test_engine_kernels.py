"""The compiled kernels give the results of the plain numpy definitions they replace."""

from __future__ import annotations

import numpy as np

from stream.engine.kernels import (
    cooc_sums,
    lookup,
    rows_by_genre,
    top_k,
    top_picks_score,
    unseen_candidates,
)


def test_top_k_is_the_stable_order_of_the_finite_scores() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        scores = rng.integers(0, 20, size=500).astype(dtype)  # many ties
        scores[rng.integers(0, 500, size=40)] = -np.inf
        finite = np.flatnonzero(np.isfinite(scores))
        expected = finite[np.lexsort((finite, -scores[finite]))]
        for k in (0, 1, 10, 460, 1000):
            assert top_k(scores, k).tolist() == expected[:k].tolist()


def test_cooc_sums_weigh_damp_and_sum_per_row() -> None:
    rows = np.array([3, 1, 3, 2], dtype=np.int32)
    strengths = np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32)
    lengths = np.array([2, 2])
    weights = np.array([1.0, 0.5])
    totals = np.array([0.0, 4.0, 16.0, 1.0])
    out_rows, sums = cooc_sums(
        rows, strengths, lengths, weights, np.argsort(rows, kind="stable"), totals, 1.0, 2.0, 0.5
    )
    # row 1: 2*1*2 / sqrt(4); row 2: 8*0.5*2 / sqrt(16); row 3: (1*1 + 4*0.5)*2 / sqrt(1)
    assert out_rows.tolist() == [1, 2, 3]
    np.testing.assert_allclose(sums, [2.0, 2.0, 6.0])


def test_unseen_candidates_drop_seen_inactive_and_repeated_rows() -> None:
    active = np.array([True, True, False, True, True, True])
    seen = np.array([1, 4], dtype=np.int32)
    rows = np.sort(np.array([5, 1, 2, 3, 3, 0, 4]))
    assert unseen_candidates(rows, seen, active).tolist() == [0, 3, 5]


def test_lookup_reads_sorted_keys_and_zero_elsewhere() -> None:
    keys = np.array([2, 5, 9])
    values = np.array([0.5, 1.5, 2.5])
    assert lookup(np.array([9, 0, 5, 10]), keys, values).tolist() == [2.5, 0.0, 1.5, 0.0]
    assert lookup(np.array([1]), keys[:0], values[:0]).tolist() == [0.0]


def test_top_picks_score_is_the_blend_plus_weighted_play_through() -> None:
    features = np.zeros((2, 11))
    features[:, 0] = [0.5, -0.5]  # mf
    features[:, 4] = [2.0, 1.0]  # popularity, relative to the best
    features[:, 7] = [0.0, 3.0]  # cooc, relative to the best
    coefficients = np.zeros(11)
    coefficients[0] = -2.0  # higher MF, fewer skips
    no_skip_model = top_picks_score(features, 1.0, 1.5, 2.0, 2.5, coefficients, 0.0, 0.0)
    np.testing.assert_allclose(no_skip_model, [0.5 + 2.5, -0.5 + 1.5 + 1.25])
    with_skip_model = top_picks_score(features, 1.0, 1.5, 2.0, 2.5, coefficients, 0.1, 0.5)
    play_through = 1.0 - 1.0 / (1.0 + np.exp(-(0.1 - 2.0 * features[:, 0])))
    np.testing.assert_allclose(with_skip_model, no_skip_model + 0.5 * play_through)


def test_top_k_of_a_long_chart_is_the_stable_order_too() -> None:
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 50, size=5_000).astype(np.float64)  # many ties at every cut
    scores[rng.integers(0, 5_000, size=300)] = -np.inf
    scores[rng.integers(0, 5_000, size=30)] = np.nan
    finite = np.flatnonzero(np.isfinite(scores))
    expected = finite[np.lexsort((finite, -scores[finite]))]
    for k in (65, 200, 1_000, 4_690, 10_000):
        assert top_k(scores, k).tolist() == expected[:k].tolist()


def test_rows_by_genre_keeps_each_genres_first_rows_in_order() -> None:
    genres_of = np.array([[0, 1, -1], [1, -1, -1], [0, 0, 2], [2, 1, -1]], dtype=np.int32)
    ranked = np.array([3, 1, 0, 2])
    rows, starts = rows_by_genre(ranked, genres_of, 4, 2)
    by_genre = [rows[starts[g] : starts[g + 1]].tolist() for g in range(4)]
    assert by_genre == [[0, 2], [3, 1], [3, 2], []]
