"""The contextual skip model and its vectorised scoring."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from stream.engine.skip_model import SkipModel


def test_learns_a_signal_and_reaches_a_good_auc() -> None:
    rng = np.random.default_rng(0)
    model = SkipModel(learning_rate=0.05, l2=0.0)
    scores, labels = [], []
    for _ in range(3_000):
        affinity = float(rng.normal())
        skipped = bool(rng.random() < 1 / (1 + np.exp(2 * affinity)))
        features = {"affinity": affinity, "noise": float(rng.normal())}
        scores.append(model.predict(features))
        labels.append(skipped)
        model.learn(features, label=skipped)
    late_scores = np.array(scores[1_000:])
    late_labels = np.array(labels[1_000:])
    positives = late_scores[late_labels]
    negatives = late_scores[~late_labels]
    auc = (positives[:, None] > negatives[None, :]).mean()
    assert auc > 0.75


def test_predict_many_equals_predict_one_by_one() -> None:
    rng = np.random.default_rng(1)
    model = SkipModel(learning_rate=0.05, l2=0.01)
    for _ in range(200):
        x = {"a": float(rng.normal()), "b": float(rng.random()), "device=tv": 1.0, "c": 2.0}
        model.learn(x, label=bool(rng.random() < 0.3))
    a = rng.normal(size=5)
    b = rng.random(5)
    common = {"device=tv": 1.0, "c": 2.0, "never-seen": 4.0}
    many = model.predict_many(common, {"a": a, "b": b})
    one_by_one = [
        model.predict({**common, "a": float(x), "b": float(y)}) for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_allclose(many, one_by_one, rtol=1e-9)


def test_untrained_model_is_undecided_and_pickles() -> None:
    model = SkipModel(learning_rate=0.02, l2=0.0)
    assert model.predict({"a": 1.0}) == 0.5
    assert model.predict_many({}, {"a": np.zeros(3)}).tolist() == [0.5, 0.5, 0.5]
    model.learn({"a": 1.0}, label=True)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.predict({"a": 0.3}) == pytest.approx(model.predict({"a": 0.3}))
