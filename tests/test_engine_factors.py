"""River BiasedMF behind a numpy item matrix."""

from __future__ import annotations

import numpy as np
import pytest

from stream.engine.factors import FactorModel


def model(**changes: object) -> FactorModel:
    params: dict[str, object] = dict(
        n_factors=8,
        learning_rate=0.05,
        l2=0.0,
        init_sigma=0.1,
        n_negatives=1,
        negative_every=1,
        seed=0,
    )
    params.update(changes)
    return FactorModel(**params)  # type: ignore[arg-type]


def test_item_matrix_stays_in_step_with_river() -> None:
    mf = model()
    rng = np.random.default_rng(1)
    for n in range(300):
        mf.learn(f"u{n % 7}", int(rng.integers(20)), float(rng.random()))
    for row in mf.learned_rows:
        np.testing.assert_allclose(mf.item_factors[row], mf.river.i_latents[row], rtol=1e-6)
        assert mf.item_bias[row] == pytest.approx(mf.river.i_biases[row], rel=1e-6)
    user = mf.river.u_latents["u3"]
    expected = (
        mf.item_factors[mf.learned_rows] @ user.astype(np.float32) + mf.item_bias[mf.learned_rows]
    )
    scores = mf.scores("u3", 20)
    assert scores is not None
    np.testing.assert_allclose(scores[mf.learned_rows], expected, rtol=1e-5)


def test_scoring_never_creates_river_state_for_unseen_ids() -> None:
    mf = model()
    mf.learn("alice", 0, 1.0)
    mf.learn("alice", 1, 1.0)
    users, items = len(mf.river.u_latents), len(mf.river.i_latents)
    scores = mf.scores("alice", 10)
    assert scores is not None
    assert np.isneginf(scores[2:]).all()  # never learned: never scored
    assert mf.scores("bob", 10) is None
    assert mf.predict("bob", 0) == 0.0 and mf.predict("alice", 7) == 0.0
    assert (len(mf.river.u_latents), len(mf.river.i_latents)) == (users, items)


def test_learns_a_preference() -> None:
    mf = model(n_negatives=0)
    for _ in range(100):
        mf.learn("alice", 0, 1.0)
        mf.learn("alice", 1, -1.0)
    scores = mf.scores("alice", 2)
    assert scores is not None and scores[0] > scores[1]
    assert mf.predict("alice", 0) > mf.predict("alice", 1)


def test_negatives_are_sampled_from_known_items_only() -> None:
    for sampling in ("popularity", "uniform"):
        mf = model(n_negatives=3, negative_sampling=sampling)
        for n in range(50):
            mf.learn("u", n % 5, 1.0)
        assert set(mf.river.i_latents) == set(range(5))
        assert mf.n_positives == 50


def test_may_sample_false_learns_no_negatives() -> None:
    mf = model(n_negatives=5)
    mf.learn("u", 0, 1.0)
    mf.learn("v", 1, 1.0)
    before = mf.river.i_biases[0]
    mf.learn("w", 1, 1.0, may_sample=False)
    assert mf.river.i_biases[0] == before


def test_forget_user_and_item() -> None:
    mf = model()
    mf.learn("u", 0, 1.0)
    mf.learn("u", 1, 1.0)
    assert mf.forget_user("u") and not mf.forget_user("u")
    assert mf.scores("u", 2) is None
    mf.forget_item(1)
    assert 1 not in mf.river.i_latents and mf.learned_rows == [0]


def test_seeded_runs_are_identical_and_pickle_round_trips() -> None:
    import pickle

    def run() -> FactorModel:
        mf = model(seed=4)
        for n in range(100):
            mf.learn(f"u{n % 3}", n % 9, 1.0)
        return mf

    a, b = run(), run()
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    c = pickle.loads(pickle.dumps(a))
    c.learn("u1", 3, 1.0)
    a.learn("u1", 3, 1.0)
    np.testing.assert_array_equal(a.item_factors, c.item_factors)


def test_rejects_an_unknown_sampling_scheme() -> None:
    with pytest.raises(ValueError, match="negative_sampling"):
        model(negative_sampling="hard")
