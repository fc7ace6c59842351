"""Contextual skip model: P(skip | user, item, context) with River's logistic regression.

Features are built by the engine (MF score, taste affinity, popularity,
co-occurrence strength, item skip rate, novelty for the user, hour, device ...);
this module standardises them with River's ``StandardScaler`` and fits a
``LogisticRegression`` on every event (label: the event was a skip).

Re-ranking many candidates with ``predict_proba_one`` in a loop would cost
~5 µs each, so :meth:`SkipModel.predict_many` evaluates the very same model
(scaler statistics and weights read from River) on a column matrix with numpy.

>>> model = SkipModel(learning_rate=0.1, l2=0.0)
>>> for i in range(200):
...     liked = i % 2 == 0
...     model.learn({"affinity": 1.0 if liked else -1.0, "bias": 1.0}, label=not liked)
>>> model.predict({"affinity": 1.0}) < 0.5 < model.predict({"affinity": -1.0})
True
>>> p = model.predict_many({"bias": 1.0}, {"affinity": np.array([1.0, -1.0])})
>>> bool(abs(p[0] - model.predict({"affinity": 1.0, "bias": 1.0})) < 1e-9)
True
"""

from __future__ import annotations

import math

import numpy as np
from river import linear_model, optim, preprocessing


class OnlineLogit:
    """Online logistic regression on standardised features (River scaler + classifier).

    Parameters
    ----------
    learning_rate
        SGD step of the weights and intercept.
    l2
        L2 penalty on the weights.
    """

    def __init__(self, learning_rate: float, l2: float) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.scaler = preprocessing.StandardScaler()
        self.classifier = linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
        )
        self.n_learned = 0

    def predict(self, features: dict[str, float]) -> float:
        """P(positive class) for one sample's features (0.5 before any learning)."""
        if not self.n_learned:
            return 0.5
        scaled = self.scaler.transform_one(features)
        return float(self.classifier.predict_proba_one(scaled)[True])

    def learn(self, features: dict[str, float], *, label: bool) -> None:
        """Update the scaler statistics, then the classifier on the scaled features."""
        self.scaler.learn_one(features)
        self.classifier.learn_one(self.scaler.transform_one(features), label)
        self.n_learned += 1

    def predict_many(self, common: dict[str, float], columns: dict[str, np.ndarray]) -> np.ndarray:
        """P(skip) for many candidates sharing ``common`` features, vectorised.

        Parameters
        ----------
        common
            Features with the same value for every candidate (context).
        columns
            Per-candidate features, each an array of the same length.

        Returns
        -------
        np.ndarray
            One probability per candidate, equal to :meth:`predict` on each
            candidate's merged features.
        """
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit_many(common, columns), -500.0, 500.0)))

    def logit_many(self, common: dict[str, float], columns: dict[str, np.ndarray]) -> np.ndarray:
        """Log-odds behind :meth:`predict_many` (0 before any learning)."""
        size = len(next(iter(columns.values()))) if columns else 1
        if not self.n_learned:
            return np.zeros(size)
        weights = self.classifier.weights
        means = self.scaler.means
        variances = self.scaler.vars
        logit = self.classifier.intercept
        for name, value in common.items():
            weight = weights.get(name, 0.0)
            variance = variances.get(name, 0.0)
            if weight and variance:
                logit += weight * (value - means[name]) / math.sqrt(variance)
        # The logit is linear in the standardised columns: fold each feature's mean and
        # standard deviation into one coefficient and take a single matrix-vector product.
        names = []
        coefficients = []
        for name in columns:
            weight = weights.get(name, 0.0)
            variance = variances.get(name, 0.0)
            if weight and variance:
                coefficient = weight / math.sqrt(variance)
                names.append(name)
                coefficients.append(coefficient)
                logit -= coefficient * means[name]
        if not names:
            return np.full(size, logit, dtype=np.float64)
        z = np.asarray(coefficients) @ np.stack([columns[name] for name in names])
        z += logit
        return z


class SkipModel(OnlineLogit):
    """P(skip | user, item, context): learns from every event, label = it was a skip.

    Parameters
    ----------
    learning_rate
        SGD step of the weights and intercept.
    l2
        L2 penalty on the weights.
    """
