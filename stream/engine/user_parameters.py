"""River's per-user MF parameters as rows of one matrix instead of one array per user.

``reco.BiasedMF`` keeps ``u_latents`` (user -> latent vector) and ``u_biases``
(user -> float) in dicts: per user a numpy array object (112 bytes before its
data), a float object and two dict entries, about 340 bytes for 32 float32
factors. :class:`UserParameters` keeps one index (user -> row) and two arrays,
and gives River two mappings over them, :attr:`~UserParameters.latents` and
:attr:`~UserParameters.biases`, about 200 bytes per user. River's SGD updates
``w[user] -= step`` through them: reading a latent vector gives a view of its
row, updated in place, then written back onto itself.

A view is valid until a new user is added (the matrix may then move), so
callers read a vector, use it and let it go -- as River and this engine do.

>>> params = UserParameters(n_factors=2)
>>> params.latents["ann"] = np.array([0.5, -1.0], dtype=np.float32)
>>> params.biases["ann"] += 0.25          # a new user's bias starts at 0, as in River
>>> params.latents["ann"] -= 0.5          # in place, as River's SGD does
>>> params.latents["ann"].tolist(), params.biases["ann"], "bob" in params.latents
([0.0, -1.5], 0.25, False)
>>> params.latents.pop("ann").tolist(), len(params.latents), len(params.biases)
([0.0, -1.5], 0, 0)
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

_FIRST_CAPACITY = 1_024


class UserParameters:
    """Latent factors (float32) and biases (float64) of users, by user id."""

    def __init__(self, n_factors: int) -> None:
        self.n_factors = n_factors
        self.rows: dict[str, int] = {}
        self.matrix = np.zeros((_FIRST_CAPACITY, n_factors), dtype=np.float32)
        self.bias_values = np.zeros(_FIRST_CAPACITY, dtype=np.float64)
        self._free: list[int] = []
        self._used = 0
        self.latents = _Latents(self)
        self.biases = _Biases(self)

    def row_of(self, user_id: str) -> int:
        """The user's row, made (zero factors and bias) if the user is new."""
        row = self.rows.get(user_id)
        if row is not None:
            return row
        if self._free:
            row = self._free.pop()
        else:
            row = self._used
            self._used += 1
            if row >= len(self.matrix):
                self._grow(row + 1)
        self.matrix[row] = 0.0
        self.bias_values[row] = 0.0
        self.rows[user_id] = row
        return row

    def _grow(self, size: int) -> None:
        # By a quarter: the slack stays small at millions of users; copies stay amortised.
        capacity = max(size, len(self.matrix) + len(self.matrix) // 4)
        matrix = np.zeros((capacity, self.n_factors), dtype=np.float32)
        matrix[: len(self.matrix)] = self.matrix
        biases = np.zeros(capacity, dtype=np.float64)
        biases[: len(self.bias_values)] = self.bias_values
        self.matrix, self.bias_values = matrix, biases

    def remove(self, user_id: str) -> tuple[np.ndarray, float] | None:
        """Drop a user; their factors (a copy) and bias, or ``None`` if unknown."""
        row = self.rows.pop(user_id, None)
        if row is None:
            return None
        self._free.append(row)
        return self.matrix[row].copy(), float(self.bias_values[row])

    def __getstate__(self) -> dict[str, Any]:
        # Compact: the users' rows in index order, no free rows or spare capacity.
        rows = np.fromiter(self.rows.values(), dtype=np.int64, count=len(self.rows))
        return {
            "n_factors": self.n_factors,
            "user_ids": list(self.rows),
            "latents": self.matrix[rows],
            "biases": self.bias_values[rows],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["n_factors"])  # type: ignore[misc]
        self.add_many(state["user_ids"], state["latents"], state["biases"])

    def add_many(self, user_ids: list[str], latents: np.ndarray, biases: np.ndarray) -> None:
        """Set the parameters of many users at once (new or known)."""
        for i, user_id in enumerate(user_ids):
            row = self.row_of(user_id)  # first: a new user may move the arrays
            self.matrix[row] = latents[i]
            self.bias_values[row] = biases[i]

    @classmethod
    def from_dicts(
        cls, n_factors: int, latents: dict[str, np.ndarray], biases: dict[str, float]
    ) -> UserParameters:
        """From River's own dicts (a snapshot written before this class existed)."""
        params = cls(n_factors)
        for user_id, vector in latents.items():
            params.latents[user_id] = vector
        for user_id, bias in biases.items():
            params.biases[user_id] = bias
        return params


class _ByUser(MutableMapping[str, Any]):
    """What River's two per-user mappings share: membership, removal, pickling.

    A subclass reads and writes its own array and names the attribute of
    :class:`UserParameters` it is (``_attribute``) and its place in what
    :meth:`UserParameters.remove` returns (``_removed_at``).
    """

    __slots__ = ("_params",)
    _attribute: str
    _removed_at: int

    def __init__(self, params: UserParameters) -> None:
        self._params = params

    def __delitem__(self, user_id: str) -> None:
        if self._params.remove(user_id) is None:
            raise KeyError(user_id)

    def pop(self, user_id: str, *default: Any) -> Any:  # type: ignore[override]
        removed = self._params.remove(user_id)
        if removed is not None:
            return removed[self._removed_at]
        if default:
            return default[0]
        raise KeyError(user_id)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._params.rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._params.rows)

    def __len__(self) -> int:
        return len(self._params.rows)

    def __reduce__(self) -> tuple[Any, ...]:
        # The mapping of the unpickled UserParameters, so both names share one store again.
        return (getattr, (self._params, self._attribute))


class _Latents(_ByUser):
    """``u_latents`` for River: user -> a float32 view of the user's row."""

    __slots__ = ()
    _attribute, _removed_at = "latents", 0

    def __getitem__(self, user_id: str) -> np.ndarray:
        # No default: an unknown user gets no random vector created as a side effect.
        params = self._params
        return params.matrix[params.rows[user_id]]

    def get(self, user_id: str, default: Any = None) -> Any:  # type: ignore[override]
        params = self._params
        row = params.rows.get(user_id)
        return default if row is None else params.matrix[row]

    def __setitem__(self, user_id: str, vector: np.ndarray) -> None:
        params = self._params
        row = params.rows.get(user_id)
        if row is None:
            row = params.row_of(user_id)  # first: a new user may move the matrix
        params.matrix[row] = vector


class _Biases(_ByUser):
    """``u_biases`` for River: user -> bias; reading an unknown user's makes it 0.0, as
    River's ``defaultdict`` does (together with zero factors)."""

    __slots__ = ()
    _attribute, _removed_at = "biases", 1

    # River reads and writes biases several times per learn_one: known users take no call.
    def __getitem__(self, user_id: str) -> float:
        params = self._params
        row = params.rows.get(user_id)
        if row is None:
            row = params.row_of(user_id)  # first: a new user may move the arrays
        return params.bias_values.item(row)

    def get(self, user_id: str, default: Any = None) -> Any:  # type: ignore[override]
        params = self._params
        row = params.rows.get(user_id)
        return default if row is None else float(params.bias_values[row])

    def __setitem__(self, user_id: str, bias: float) -> None:
        params = self._params
        row = params.rows.get(user_id)
        if row is None:
            row = params.row_of(user_id)  # first: a new user may move the arrays
        params.bias_values[row] = bias
