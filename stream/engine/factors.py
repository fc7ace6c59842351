"""Collaborative filtering on implicit feedback with River's ``reco.BiasedMF``.

River learns (user, item, label) one at a time and keeps its parameters in
mappings: ``i_latents`` (item -> latent vector) and ``i_biases`` (item -> bias),
by default dicts of numpy vectors and floats. To score a whole catalog at once,
this module gives River mappings over one float32 matrix and bias arrays,
row-aligned with the engine's :class:`~stream.engine.state.ItemIndex`
(:class:`ItemLatents`, :class:`ItemBiases`): River's SGD updates the scoring
matrix itself, and an item costs a matrix row rather than an array object and
two dict entries. Users get the same (:mod:`stream.engine.user_parameters`).
Only rows River has actually learned are ever scored: River would silently
create random factors for an id it has not seen.

An item's initial latent factors are a pure function of the seed and the item's
id (:meth:`FactorModel.initial_latents`), not of the order items were met in:
engines that learn from different events start every item from the same point,
so what each learned can be added up (see :mod:`stream.engine.item_updates`).

Labels are the event's signal weight (a skip is a negative label), and each
positive event also teaches a few sampled negatives (label 0) drawn uniformly
from items the model knows, which is what keeps implicit-feedback MF from
scoring everything as liked.

>>> mf = FactorModel(n_factors=4, learning_rate=0.05, l2=0.0, init_sigma=0.1,
...                  n_negatives=1, negative_every=1, seed=0)
>>> for _ in range(30):
...     mf.learn("alice", 0, 1.0)
...     mf.learn("alice", 1, -1.0)
>>> scores = mf.scores("alice", 2)
>>> bool(scores[0] > scores[1]), mf.scores("nobody", 2) is None
(True, True)
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np
from river import optim, reco, stats, utils

from stream.engine.kernels import hashed_normals, mf_top_k
from stream.engine.state import grown
from stream.engine.user_parameters import UserParameters

#: Positive events remembered for popularity-proportional negative sampling.
_RECENT_POSITIVES = 2048


class FactorModel:
    """Implicit-feedback biased matrix factorisation over item rows.

    Parameters
    ----------
    n_factors
        Latent dimensions.
    learning_rate
        SGD step for biases and latents.
    l2
        L2 penalty on latent factors.
    init_sigma
        Standard deviation of the initial latent factors.
    n_negatives
        Sampled negatives per positive event.
    negative_every
        Sample negatives for one positive event in this many.
    seed
        Seeds latent initialisation and negative sampling.
    negative_sampling
        ``"popularity"``: negatives drawn from the items of the latest positive
        events (popularity-proportional, so MF learns taste beyond popularity,
        which the engine scores separately); ``"uniform"``: from every known item.
    """

    def __init__(
        self,
        n_factors: int,
        learning_rate: float,
        l2: float,
        init_sigma: float,
        n_negatives: int,
        negative_every: int,
        seed: int,
        negative_sampling: str = "popularity",
    ) -> None:
        self.n_factors = n_factors
        self.learning_rate = learning_rate
        self.l2 = l2
        self.init_sigma = init_sigma
        self.n_negatives = n_negatives
        self.negative_every = negative_every
        self.seed = seed
        if negative_sampling not in ("popularity", "uniform"):
            raise ValueError(
                f"negative_sampling must be 'popularity' or 'uniform', got {negative_sampling!r}"
            )
        self.negative_sampling = negative_sampling
        self.river = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            l2_bias=0.0,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=init_sigma, seed=seed),
            seed=seed,
        )
        # Users' factors and biases as rows of two arrays, under River's names.
        self.user_parameters = UserParameters(n_factors)
        self.river.u_latents = self.user_parameters.latents
        self.river.u_biases = self.user_parameters.biases
        self.item_factors = np.zeros((0, n_factors), dtype=np.float32)
        self.item_bias = np.zeros(0, dtype=np.float32)
        # River's own (float64) item biases; ``item_bias`` is their float32 copy for scoring.
        self.item_bias_exact = np.zeros(0, dtype=np.float64)
        # Item bias where learned, -inf elsewhere: one in-place add masks unlearned rows.
        self.offset = np.zeros(0, dtype=np.float32)
        self._score_buffer = np.zeros(0, dtype=np.float32)
        self.learned = np.zeros(0, dtype=bool)
        self.learned_rows: list[int] = []
        self.rng = np.random.default_rng(seed)
        self.n_positives = 0
        # Items of the latest positive events: sampling from it is popularity-proportional.
        self.recent_positives = np.zeros(_RECENT_POSITIVES, dtype=np.int32)
        # Items' factors and biases as rows of the arrays above, under River's names.
        self.river.i_latents = ItemLatents(self)
        self.river.i_biases = ItemBiases(self)

    def __getstate__(self) -> dict:
        # The score buffer is scratch space, not state: snapshots leave it out.
        state = self.__dict__.copy()
        state["_score_buffer"] = np.zeros(0, dtype=np.float32)
        # River's item mappings are views of this model's arrays, which the state holds:
        # left out, so no copy and no reference cycle; __setstate__ puts them back.
        river = state["river"] = copy.copy(self.river)
        river.i_latents = river.i_biases = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "user_parameters" not in state:  # a snapshot from before UserParameters
            river = self.river
            self.user_parameters = UserParameters.from_dicts(
                self.n_factors, dict(river.u_latents), dict(river.u_biases)
            )
            river.u_latents = self.user_parameters.latents
            river.u_biases = self.user_parameters.biases
        river = self.river
        if river.i_latents is not None:  # River's own dicts: a snapshot from before ItemLatents
            # The float32 matrix already mirrors River's item factors; the biases move over.
            self.item_bias_exact = np.zeros(len(self.learned), dtype=np.float64)
            for row, bias in dict(river.i_biases).items():
                self.item_bias_exact[row] = bias
        river.i_latents = ItemLatents(self)
        river.i_biases = ItemBiases(self)

    # ------------------------------------------------------------------ learning
    def _reserve(self, size: int) -> None:
        if size > len(self.learned):
            self.item_factors = grown(self.item_factors, size)
            self.item_bias = grown(self.item_bias, size)
            self.item_bias_exact = grown(self.item_bias_exact, size)
            self.offset = grown(self.offset, size, -np.inf)
            self.learned = grown(self.learned, size, False)

    def add_row(self, row: int, latents: np.ndarray) -> None:
        """Give ``row`` its latent factors (a copy of ``latents``), learned from now on."""
        self._reserve(row + 1)
        if not self.learned[row]:
            self.learned[row] = True
            self.learned_rows.append(row)
            self.item_bias_exact[row] = self.item_bias[row] = self.offset[row] = 0.0
        self.item_factors[row] = latents

    def set_bias(self, row: int, bias: float) -> None:
        self._reserve(row + 1)
        self.item_bias_exact[row] = bias
        self.item_bias[row] = bias
        if self.learned[row]:
            self.offset[row] = self.item_bias[row]

    def learn(
        self,
        user_id: str,
        row: int,
        label: float,
        *,
        may_sample: bool = True,
        item_id: str | None = None,
        changed: dict[int, tuple[np.ndarray, float] | None] | None = None,
    ) -> None:
        """One labelled (user, item) pair, plus sampled negatives after a positive.

        ``may_sample=False`` lets the caller forbid negatives (for example an item
        the user has interacted with can't be a negative for them). ``item_id``
        keys the initial factors of an item new to the model (the row when
        omitted). ``changed``, when given, receives every row whose item
        parameters this call updates and that it does not hold yet, with the
        row's factors and bias before the update (``None`` for an item new to the
        model, which starts from its initial factors).
        """
        river = self.river
        # Latents in float32 (half the memory of River's float64 default; SGD updates them
        # in place, so they stay float32). Created here, before River's defaultdicts would.
        if user_id not in river.u_latents:
            river.u_latents[user_id] = self._fresh_latents()
        if row not in river.i_latents:
            if changed is not None and row not in changed:
                changed[row] = None
            river.i_latents[row] = self.initial_latents(str(row) if item_id is None else item_id)
        elif changed is not None and row not in changed:
            changed[row] = (self.item_factors[row].copy(), float(self.item_bias_exact[row]))
        # River's SGD writes the item's factors and bias straight into this model's arrays.
        river.learn_one(user_id, row, label)
        if label <= 0 or not may_sample:
            return
        for negative in self._negatives(row):
            if changed is not None and negative not in changed:
                changed[negative] = (
                    self.item_factors[negative].copy(),
                    float(self.item_bias_exact[negative]),
                )
            river.learn_one(user_id, negative, 0.0)

    def learn_user(self, user_id: str, row: int, label: float, *, may_sample: bool = True) -> None:
        """:meth:`learn` for the user's parameters only: the item side stays as it is.

        The same SGD step on the user's bias and latent factors (and on those
        against the sampled negatives), with the items' factors, biases and
        River's global mean held fixed. Does nothing for an item the model has
        no factors for.

        >>> mf = FactorModel(n_factors=2, learning_rate=0.1, l2=0.0, init_sigma=0.1,
        ...                  n_negatives=0, negative_every=1, seed=0)
        >>> mf.learn("ann", 0, 1.0)
        >>> before = mf.item_factors[0].copy(), mf.predict("bob", 0)
        >>> mf.learn_user("bob", 0, 1.0)
        >>> bool((mf.item_factors[0] == before[0]).all()), mf.predict("bob", 0) > before[1]
        (True, True)
        """
        river = self.river
        if row not in river.i_latents:
            return
        if user_id not in river.u_latents:
            river.u_latents[user_id] = self._fresh_latents()
        self._learn_user_step(user_id, row, label)
        if label <= 0 or not may_sample:
            return
        for negative in self._negatives(row):
            self._learn_user_step(user_id, negative, 0.0)

    def _learn_user_step(self, user_id: str, row: int, label: float) -> None:
        # River's learn_one (reco.BiasedMF) restricted to the user's parameters.
        river = self.river
        user_latents = river.u_latents[user_id]
        item_latents = river.i_latents[row]
        user_bias = river.u_biases[user_id]
        prediction = (
            river.global_mean.get()
            + user_bias
            + river.i_biases.get(row, 0.0)
            + np.dot(user_latents, item_latents).item()
        )
        gradient = river.loss.gradient(label, prediction)
        gradient = utils.math.clamp(
            gradient, minimum=-river.clip_gradient, maximum=river.clip_gradient
        )
        river.u_bias_optimizer.step(river.u_biases, {user_id: gradient + river.l2_bias * user_bias})
        river.u_latent_optimizer.step(
            river.u_latents,
            {user_id: gradient * item_latents + river.l2_latent * user_latents},
        )

    def _negatives(self, row: int) -> list[int]:
        """Rows to learn as negatives after a positive event on ``row`` (often none)."""
        self.recent_positives[self.n_positives % _RECENT_POSITIVES] = row
        self.n_positives += 1
        if self.n_positives % self.negative_every:
            return []
        n_known = len(self.learned_rows)
        if n_known < 2:
            return []
        negatives = []
        for _ in range(self.n_negatives):
            if self.negative_sampling == "popularity":
                pool = min(self.n_positives, _RECENT_POSITIVES)
                negative = int(self.recent_positives[int(self.rng.integers(pool))])
            else:
                negative = self.learned_rows[int(self.rng.integers(n_known))]
            if negative != row:
                negatives.append(negative)
        return negatives

    def _fresh_latents(self) -> np.ndarray:
        latents: np.ndarray = self.river.latent_initializer(shape=self.n_factors)
        return latents.astype(np.float32)

    def initial_latents(self, item_id: str) -> np.ndarray:
        """The latent factors an item starts from: N(0, ``init_sigma``²), keyed by seed and id.

        >>> mf = FactorModel(n_factors=3, learning_rate=0.05, l2=0.0, init_sigma=0.1,
        ...                  n_negatives=1, negative_every=1, seed=0)
        >>> first = mf.initial_latents("t1")
        >>> first.dtype, bool((first == mf.initial_latents("t1")).all())
        (dtype('float32'), True)
        >>> bool((first == mf.initial_latents("t2")).any())
        False
        """
        digest = hashlib.blake2b(f"{self.seed}\x00{item_id}".encode(), digest_size=8).digest()
        key = np.uint64(int.from_bytes(digest, "little"))
        return hashed_normals(key, self.n_factors, float(self.init_sigma))

    # ------------------------------------------------------------------ replicas
    def item_parameters(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """River's latent factors (float32) and biases (float64) of learned ``rows``."""
        return self.item_factors[rows], self.item_bias_exact[rows]

    def add_to_items(
        self,
        rows: np.ndarray,
        item_ids: list[str],
        latents: np.ndarray,
        biases: np.ndarray,
        *,
        starts: np.ndarray | None = None,
    ) -> None:
        """Add ``latents[i]`` / ``biases[i]`` to the factors / bias of item ``rows[i]`` (distinct).

        An item new to the model starts from ``starts[i]`` when given, else from
        :meth:`initial_latents` of ``item_ids[i]``, and a zero bias, as it would
        through :meth:`learn`.
        """
        if not len(rows):
            return
        self._reserve(int(rows.max()) + 1)
        for i, row in enumerate(rows.tolist()):
            if not self.learned[row]:
                start = self.initial_latents(item_ids[i]) if starts is None else starts[i]
                self.add_row(row, start)
        self.item_factors[rows] += latents
        self.item_bias_exact[rows] += biases
        self.item_bias[rows] = self.item_bias_exact[rows]
        self.offset[rows] = self.item_bias[rows]

    def mean_state(self) -> tuple[float, float]:
        """River's global mean as ``(weight, weighted sum of labels)``."""
        mean = self.river.global_mean
        return mean.n, mean.n * mean.get()

    def add_to_mean(self, weight: float, total: float) -> None:
        """Merge ``weight`` more labels summing to ``total`` into River's global mean."""
        if weight <= 0:
            return
        other = stats.Mean()
        other.update(total / weight, w=weight)
        self.river.global_mean += other

    def forget_user(self, user_id: str) -> bool:
        found = user_id in self.river.u_latents
        self.river.u_latents.pop(user_id, None)
        self.river.u_biases.pop(user_id, None)
        return found

    def forget_item(self, row: int) -> None:
        if row < len(self.learned) and self.learned[row]:
            self.learned[row] = False
            self.offset[row] = -np.inf
            self.learned_rows.remove(row)

    # ------------------------------------------------------------------ scoring
    def knows_user(self, user_id: str) -> bool:
        return user_id in self.river.u_latents

    def user_vector(self, user_id: str) -> np.ndarray | None:
        vector = self.river.u_latents.get(user_id)
        return None if vector is None else vector.astype(np.float32)

    def scores(self, user_id: str, size: int) -> np.ndarray | None:
        """Item bias + user·item for rows ``0 .. size-1``; ``-inf`` where unlearned.

        ``None`` for a user the model has never learned from. The global mean and
        user bias are left out: they don't change a user's ranking.
        """
        vector = self.user_vector(user_id)
        if vector is None:
            return None
        n = min(size, len(self.learned))
        if n < size:
            out = np.full(size, -np.inf, dtype=np.float32)
            np.matmul(self.item_factors[:n], vector, out=out[:n])
        else:
            out = self.item_factors[:n] @ vector
        out[:n] += self.offset[:n]
        return out

    def scores_and_top(
        self, user_id: str, size: int, penalty: np.ndarray, seen: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`scores` plus ``penalty``, ``-inf`` on sorted ``seen``, and its top ``k`` rows.

        One compiled pass (:func:`~stream.engine.kernels.mf_top_k`). The scores
        are written to a buffer this model reuses: they are valid until the next
        call. ``None`` for a user the model has never learned from.
        """
        vector = self.river.u_latents.get(user_id)
        if vector is None:
            return None
        if vector.dtype != np.float32:
            vector = vector.astype(np.float32)
        buffer = self._score_buffer
        if len(buffer) < size:
            buffer = self._score_buffer = np.empty(max(size, 2 * len(buffer)), dtype=np.float32)
        out = buffer[:size]
        learned = min(size, len(self.learned))
        np.matmul(self.item_factors[:learned], vector, out=out[:learned])
        return out, mf_top_k(out, self.offset, penalty, seen, learned, k)

    def predict(self, user_id: str, row: int) -> float:
        """River's full prediction for a known pair, 0 when either side is unknown.

        Reads River's dicts with ``get`` so no factors are created as a side effect.
        """
        user = self.river.u_latents.get(user_id)
        if user is None or row >= len(self.learned) or not self.learned[row]:
            return 0.0
        return float(
            self.river.global_mean.get()
            + self.river.u_biases.get(user_id, 0.0)
            + self.item_bias[row]
            + float(user @ self.item_factors[row])
        )


class _ByItemRow(MutableMapping[int, Any]):
    """What River's two per-item mappings share: the items are the model's learned rows.

    Removing an item is :meth:`FactorModel.forget_item`. A :class:`FactorModel`
    pickles its arrays and not these; pickled on its own, a mapping is a dict.
    """

    __slots__ = ("_model",)

    def __init__(self, model: FactorModel) -> None:
        self._model = model

    def _knows(self, row: Any) -> bool:
        learned = self._model.learned
        try:
            return 0 <= row < len(learned) and bool(learned[row])
        except TypeError:  # not a row number
            return False

    __contains__ = _knows

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._model.learned_rows))

    def __len__(self) -> int:
        return len(self._model.learned_rows)

    def __delitem__(self, row: int) -> None:
        if not self._knows(row):
            raise KeyError(row)
        self._model.forget_item(row)

    def __reduce__(self) -> tuple[Any, ...]:
        # On its own (River pickled without its FactorModel) a mapping is River's dict.
        return (dict, (self._as_dict(),))

    def _as_dict(self) -> dict[int, Any]:
        return {row: self[row] for row in self}


class ItemLatents(_ByItemRow):
    """``i_latents`` for River: row -> a float32 view of the row of ``item_factors``.

    River's SGD updates ``w[row] -= step`` in place through the view, so the
    scoring matrix is River's state itself: no copy after each ``learn_one``, and
    no array object per item. A view is valid until a new row is added.
    """

    __slots__ = ()

    def _as_dict(self) -> dict[int, Any]:
        return {row: self[row].copy() for row in self}

    # River reads and writes these several times per learn_one: the known-row test is
    # written out here (not a call to _knows) to keep each access to a few operations.
    def __getitem__(self, row: int) -> np.ndarray:
        # No default: an unknown item gets no random vector created as a side effect.
        model = self._model
        if row < len(model.learned) and model.learned[row]:
            return model.item_factors[row]
        raise KeyError(row)

    def get(self, row: int, default: Any = None) -> Any:  # type: ignore[override]
        return self._model.item_factors[row] if self._knows(row) else default

    def __setitem__(self, row: int, vector: np.ndarray) -> None:
        model = self._model
        if row < len(model.learned) and model.learned[row]:
            model.item_factors[row] = vector  # River's SGD writing a view back onto itself
        else:
            model.add_row(row, vector)


class ItemBiases(_ByItemRow):
    """``i_biases`` for River: row -> River's float64 bias; 0.0 for an item without one
    (River's ``defaultdict`` default), which reading does not create."""

    __slots__ = ()

    def __getitem__(self, row: int) -> float:
        model = self._model
        if row < len(model.learned) and model.learned[row]:
            return model.item_bias_exact.item(row)
        return 0.0

    def get(self, row: int, default: Any = None) -> Any:  # type: ignore[override]
        return self._model.item_bias_exact.item(row) if self._knows(row) else default

    def __setitem__(self, row: int, bias: float) -> None:
        model = self._model
        if row < len(model.learned) and model.learned[row]:
            model.item_bias_exact[row] = model.item_bias[row] = model.offset[row] = bias
        else:
            model.set_bias(row, bias)
