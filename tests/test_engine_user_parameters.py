"""River's per-user MF parameters kept as rows of one matrix (stream.engine.user_parameters)."""

from __future__ import annotations

import collections
import pickle
import tracemalloc

import numpy as np
import pytest

from stream.engine.factors import FactorModel
from stream.engine.user_parameters import UserParameters


def _model(seed: int = 0) -> FactorModel:
    return FactorModel(
        n_factors=8,
        learning_rate=0.05,
        l2=0.01,
        init_sigma=0.1,
        n_negatives=1,
        negative_every=1,
        seed=seed,
    )


def _train(model: FactorModel, n_users: int, *, events_per_user: int = 3) -> None:
    for step in range(events_per_user):
        for user in range(n_users):
            model.learn(f"u{user}", (user * 7 + step) % 50, 1.0 if step % 3 else 0.0)


def test_vectors_survive_the_matrix_growing_past_its_first_capacity():
    params = UserParameters(n_factors=3)
    for i in range(5_000):
        params.latents[f"u{i}"] = np.full(3, i, dtype=np.float32)
        params.biases[f"u{i}"] += i / 2
    assert len(params.latents) == len(params.biases) == 5_000
    assert params.latents["u0"].tolist() == [0.0, 0.0, 0.0]
    assert params.latents["u4999"].tolist() == [4999.0] * 3
    assert params.biases["u1234"] == 617.0


def test_an_unknown_user_gets_no_vector_and_reads_through_get_create_nothing():
    params = UserParameters(n_factors=2)
    with pytest.raises(KeyError):
        params.latents["nobody"]
    assert params.latents.get("nobody") is None and params.biases.get("nobody", 1.5) == 1.5
    assert "nobody" not in params.latents and len(params.latents) == 0


def test_a_removed_users_row_is_reused_and_starts_from_zero():
    params = UserParameters(n_factors=2)
    params.latents["ann"] = np.array([1.0, 2.0], dtype=np.float32)
    params.biases["ann"] = 3.0
    removed = params.latents.pop("ann")
    assert removed.tolist() == [1.0, 2.0] and params.biases.pop("ann", None) is None
    params.latents["bob"] = np.array([5.0, 6.0], dtype=np.float32)
    assert params.rows == {"bob": 0}
    assert params.biases["bob"] == 0.0, "the row's old bias is not inherited"


def test_learning_matches_rivers_own_dicts_exactly():
    """The same SGD arithmetic as BiasedMF with plain dicts, to the bit."""
    ours, plain = _model(), _model()
    plain.river.u_latents, plain.river.u_biases = {}, collections.defaultdict(float)
    del plain.user_parameters  # plain dicts, as River keeps them
    _train(ours, 300)
    _train(plain, 300)
    for user in ("u0", "u17", "u299"):
        np.testing.assert_array_equal(ours.river.u_latents[user], plain.river.u_latents[user])
        assert ours.river.u_biases[user] == plain.river.u_biases[user]


def test_a_pickled_model_keeps_one_store_under_both_of_rivers_names():
    model = _model()
    _train(model, 40)
    restored = pickle.loads(pickle.dumps(model))
    params = restored.user_parameters
    assert restored.river.u_latents is params.latents
    assert restored.river.u_biases is params.biases
    for user in ("u0", "u39"):
        np.testing.assert_array_equal(params.latents[user], model.river.u_latents[user])
        assert params.biases[user] == model.river.u_biases[user]
    _train(restored, 41)  # and it goes on learning, a new user included
    assert len(restored.river.u_latents) == 41


def test_a_snapshot_with_rivers_dicts_is_converted_on_restore():
    model = _model()
    _train(model, 10)
    state = model.__getstate__()
    river = pickle.loads(pickle.dumps(state["river"]))
    river.u_latents = {user: vector.copy() for user, vector in model.river.u_latents.items()}
    river.u_biases = dict(model.river.u_biases.items())
    old = {key: value for key, value in state.items() if key != "user_parameters"}
    old["river"] = river
    restored = FactorModel.__new__(FactorModel)
    restored.__setstate__(old)
    assert restored.river.u_latents is restored.user_parameters.latents
    np.testing.assert_array_equal(restored.river.u_latents["u3"], model.river.u_latents["u3"])
    assert restored.river.u_biases["u3"] == model.river.u_biases["u3"]


def test_a_user_costs_far_less_than_in_rivers_dicts():
    def bytes_per_user(store_as_dicts: bool) -> float:
        n = 20_000
        vectors = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        if store_as_dicts:
            latents = {f"user-{i}": vectors[i].copy() for i in range(n)}
            biases = {f"user-{i}": float(i) + 0.5 for i in range(n)}
            kept: object = (latents, biases)
        else:
            params = UserParameters(n_factors=32)
            for i in range(n):
                params.latents[f"user-{i}"] = vectors[i]
                params.biases[f"user-{i}"] = float(i) + 0.5
            kept = params
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
        # The ids are the engine's anyway; count them out of both.
        return used / n - 60

    as_dicts, as_rows = bytes_per_user(True), bytes_per_user(False)
    assert as_rows < 0.7 * as_dicts, (as_rows, as_dicts)
