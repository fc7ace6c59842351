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
from collections.abc import Sequence

import numpy as np
from river import linear_model, optim, preprocessing

#: A weighted feature's position among predict_split's names, its coefficient and mean.
_Position = tuple[int, float, float]


class OnlineLogit:
    """Online logistic regression on standardised features (River scaler + classifier).

    Parameters
    ----------
    learning_rate
        SGD step of the weights and intercept.
    l2
        L2 penalty on the weights.
    """

    def __init__(self, learning_rate: float, l2: float, *, form_every: int = 1) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.form_every = form_every
        self.scaler = preprocessing.StandardScaler()
        self.classifier = linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
        )
        self.n_learned = 0
        self._form: tuple[dict[str, tuple[float, float]], float] | None = None
        # For predict_split: (form, names, [(position, coefficient, mean)]), per form.
        self._positions: tuple[object, tuple[str, ...], list[_Position]] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_positions"] = None  # derived from the form
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("form_every", 1)
        state.setdefault("_form", None)
        state.setdefault("_positions", None)
        self.__dict__.update(state)

    def _linear(self) -> tuple[dict[str, tuple[float, float]], float]:
        """The model as ``{feature: (coefficient, mean)}`` and an intercept.

        ``logit = intercept + sum(coefficient * (x - mean))`` over the features
        present is River's scaler followed by its classifier. Reading it out of
        River costs a pass over every feature, so :meth:`learn` redoes it only
        every ``form_every`` steps (and after the first): with ``form_every=1``
        predictions are River's exactly; larger values serve a model at most
        that many steps old, the same whatever was queried in between.
        """
        if self._form is None:
            self._form = self._read_form()
        return self._form

    def _read_form(self) -> tuple[dict[str, tuple[float, float]], float]:
        weights = self.classifier.weights
        means = self.scaler.means
        coefficients: dict[str, tuple[float, float]] = {}
        for name, variance in self.scaler.vars.items():
            weight = weights.get(name, 0.0)
            if weight and variance:
                coefficients[name] = (weight / math.sqrt(variance), means[name])
        return coefficients, float(self.classifier.intercept)

    def predict(self, features: dict[str, float]) -> float:
        """P(positive class) for one sample's features (0.5 before any learning)."""
        if not self.n_learned:
            return 0.5
        coefficients, logit = self._linear()
        for name, value in features.items():
            found = coefficients.get(name)
            if found is not None:
                logit += found[0] * (value - found[1])
        return 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, logit))))

    def predict_split(
        self, common: dict[str, float], names: tuple[str, ...], values: Sequence[float]
    ) -> float:
        """:meth:`predict` of ``common`` merged with ``dict(zip(names, values))``, unmerged.

        The same arithmetic in the same order (the merged dict's order), without
        building the merged dict or looking each name up per call: the positions of
        ``names`` the model gives a weight are found once per form.

        Examples
        --------
        >>> model = OnlineLogit(learning_rate=0.1, l2=0.0)
        >>> for i in range(50):
        ...     model.learn({"x": float(i % 2), "c": 1.0 + i % 3}, label=i % 2 == 0)
        >>> model.predict_split({"c": 2.0}, ("x", "y"), [1.0, 5.0]) == model.predict(
        ...     {"c": 2.0, "x": 1.0, "y": 5.0})
        True
        """
        if not self.n_learned:
            return 0.5
        form = self._linear()
        coefficients, logit = form
        for name, value in common.items():
            found = coefficients.get(name)
            if found is not None:
                logit += found[0] * (value - found[1])
        positions = self._positions
        if positions is None or positions[0] is not form or positions[1] != names:
            found_at = [(i, coefficients.get(name)) for i, name in enumerate(names)]
            positions = (form, names, [(i, *found) for i, found in found_at if found is not None])
            self._positions = positions
        for position, coefficient, mean in positions[2]:
            logit += coefficient * (values[position] - mean)
        return 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, logit))))

    def learn(self, features: dict[str, float], *, label: bool) -> None:
        """Update the scaler statistics, then the classifier on the scaled features."""
        self.scaler.learn_one(features)
        self.classifier.learn_one(self.scaler.transform_one(features), label)
        self.n_learned += 1
        if self._form is None or self.n_learned % self.form_every == 0:
            self._form = self._read_form()

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
        coefficients, intercept = self.linear_form(common, tuple(columns))
        if not columns:
            return np.full(size, intercept, dtype=np.float64)
        z = coefficients @ np.stack([columns[name] for name in columns])
        z += intercept
        return z

    def linear_form(
        self, common: dict[str, float], names: tuple[str, ...]
    ) -> tuple[np.ndarray, float]:
        """The model as ``logit = coefficients @ x + intercept`` over the features ``names``.

        The logit is linear in the standardised features, so each feature's mean
        and standard deviation fold into one coefficient, and the ``common``
        features (the same for every candidate) fold into the intercept. Scoring
        many candidates is then one matrix-vector product.

        Parameters
        ----------
        common
            Features with the same value for every candidate (context).
        names
            The per-candidate features, in the order of the returned coefficients.

        Returns
        -------
        tuple
            Coefficients (float64, one per name; 0 for a feature the model gives
            no weight) and the intercept; all zeros before any learning.

        Examples
        --------
        >>> model = OnlineLogit(learning_rate=0.1, l2=0.0)
        >>> for i in range(50):
        ...     model.learn({"x": float(i % 2), "c": 1.0 + i % 3}, label=i % 2 == 0)
        >>> coefficients, intercept = model.linear_form({"c": 2.0}, ("x",))
        >>> logit = coefficients[0] * 1.0 + intercept
        >>> bool(abs(1 / (1 + math.exp(-logit)) - model.predict({"x": 1.0, "c": 2.0})) < 1e-12)
        True
        """
        coefficients = np.zeros(len(names))
        if not self.n_learned:
            return coefficients, 0.0
        form, intercept = self._linear()
        for name, value in common.items():
            found = form.get(name)
            if found is not None:
                intercept += found[0] * (value - found[1])
        for position, name in enumerate(names):
            found = form.get(name)
            if found is not None:
                coefficients[position] = found[0]
                intercept -= found[0] * found[1]
        return coefficients, float(intercept)


class SkipModel(OnlineLogit):
    """P(skip | user, item, context): learns from every event, label = it was a skip.

    Parameters
    ----------
    learning_rate
        SGD step of the weights and intercept.
    l2
        L2 penalty on the weights.
    """
