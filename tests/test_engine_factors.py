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


def test_rivers_item_parameters_are_the_scoring_arrays() -> None:
    mf = model()
    for n in range(40):
        mf.learn(f"u{n % 4}", n % 6, 1.0 if n % 3 else -0.5)
    river = mf.river
    assert sorted(river.i_latents) == sorted(mf.learned_rows) == list(range(6))
    for row in range(6):
        # River's SGD wrote into the scoring matrix itself: no copy to keep in step.
        assert np.shares_memory(river.i_latents[row], mf.item_factors)
        assert river.i_biases[row] == mf.item_bias_exact[row] != 0.0
        assert mf.offset[row] == np.float32(river.i_biases[row]) == mf.item_bias[row]
    assert 6 not in river.i_latents and river.i_biases[6] == 0.0 and len(river.i_biases) == 6
    with pytest.raises(KeyError):
        river.i_latents[6]  # no random factors made up for an unknown item
    del river.i_latents[2]
    assert 2 not in river.i_biases and 2 not in mf.learned_rows and np.isneginf(mf.offset[2])


def test_a_restored_model_learns_into_its_own_arrays() -> None:
    import copy
    import pickle

    mf = model(seed=2)
    for n in range(60):
        mf.learn(f"u{n % 5}", n % 7, 1.0)
    for restored in (pickle.loads(pickle.dumps(mf)), copy.deepcopy(mf)):
        assert restored.river.i_latents is not mf.river.i_latents
        restored.learn("u1", 3, 1.0)
        assert np.shares_memory(restored.river.i_latents[3], restored.item_factors)
        assert not np.array_equal(restored.item_factors[3], mf.item_factors[3])
    mf.learn("u1", 3, 1.0)
    np.testing.assert_array_equal(mf.item_factors, restored.item_factors)
    np.testing.assert_array_equal(mf.item_bias_exact, restored.item_bias_exact)


def test_a_snapshot_with_rivers_item_dicts_is_converted_on_restore() -> None:
    import pickle

    mf = model(seed=3)
    for n in range(60):
        mf.learn(f"u{n % 5}", n % 7, 1.0 if n % 4 else -1.0)
    river_alone = pickle.loads(pickle.dumps(mf.river))  # River's own format: dicts
    assert isinstance(river_alone.i_latents, dict) and isinstance(river_alone.i_biases, dict)
    state = mf.__getstate__()
    del state["river"], state["item_bias_exact"]
    old = pickle.loads(pickle.dumps(state))  # what such a snapshot held, River's dicts aside
    river_alone.u_latents = old["user_parameters"].latents
    river_alone.u_biases = old["user_parameters"].biases
    old["river"] = river_alone
    restored = FactorModel.__new__(FactorModel)
    restored.__setstate__(old)
    np.testing.assert_array_equal(restored.item_bias_exact, mf.item_bias_exact)
    restored.learn("u2", 4, 1.0)
    mf.learn("u2", 4, 1.0)
    np.testing.assert_array_equal(restored.item_factors, mf.item_factors)
    assert restored.river.i_biases[4] == mf.river.i_biases[4]


def test_rejects_an_unknown_sampling_scheme() -> None:
    with pytest.raises(ValueError, match="negative_sampling"):
        model(negative_sampling="hard")
