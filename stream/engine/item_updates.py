"""Item-side replicas: what one engine learned about items, for other engines to add.

Several workers share the stream, each learning from its own users. Item-side
state -- popularity, trending and context counts, co-occurrence, the items'
latent factors and biases -- must be the same everywhere, so each engine
periodically *takes* the changes its own :meth:`~stream.engine.Engine.learn`
calls made (:class:`ItemUpdates`) and every other engine *applies* them.

What travels is additive, keyed by item id (rows are local to each engine):

- Decayed counts (plays, recent plays, skips, the per-(hour bucket, device)
  context counts, co-occurrence totals): the sum per item of the contributions
  since the last take, valued at :attr:`ItemUpdates.reference_time` -- a
  contribution ``w`` made at ``t`` is sent as ``w * 2 ** ((t - ref) / half_life)``
  and the receiver rescales it to its own forward-decay origin. Exact: an engine
  that applied everyone's updates holds the counts of one engine that learned
  every event (to float rounding), whatever the order.
- Co-occurrence: per item pair, the summed increments, valued the same way. Exact
  too, except where a neighbour list is full and prunes its weakest entries:
  which ones depends on the order increments arrive in.
- Matrix factorisation: per item, the change of its latent factors and bias
  since the last take, and River's global mean as (weight, sum). Every engine
  starts an item from the same factors (a function of seed and id:
  :meth:`~stream.engine.factors.FactorModel.initial_latents`), so an engine that
  never saw an item creates it there and adds the change: no absolute values
  are needed, and replicas that applied each other's updates hold the same
  factors (to float32 rounding). This is asynchronous SGD: each engine's
  gradient steps used the item factors it had at the time, so the factors are
  close to, not equal to, those of one engine that learned everything.
- Event counters (events, skips; the global skip share) and the latest event time.

The encoding (:func:`encode_item_updates`) is JSON via orjson, with arrays as
base64 text of their little-endian bytes (float64 amounts, float32 factor
changes: lossless).

>>> from stream.engine import Engine, EngineConfig
>>> from stream.models import EventType, Interaction
>>> a, b = Engine(EngineConfig(seed=0)), Engine(EngineConfig(seed=0))
>>> a.learn(Interaction("e1", "ann", "t1", EventType.PLAY, 100.0, ms_played=200_000))
>>> a.learn(Interaction("e2", "ann", "t2", EventType.PLAY, 200.0, ms_played=200_000))
>>> updates = a.take_item_updates()
>>> updates.item_ids, updates.n_events, a.take_item_updates() is None
(('t1', 't2'), 2, True)
>>> b.apply_item_updates(decode_item_updates(encode_item_updates(updates)))
>>> b.similar_items("t1", 5, now=200.0) == a.similar_items("t1", 5, now=200.0)
True
>>> b.take_item_updates() is None  # what was applied is never sent on
True
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
from collections.abc import Collection, Hashable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
import orjson

from stream.engine.cooccurrence import PairJournal
from stream.engine.state import DecayingVector

if TYPE_CHECKING:
    from stream.engine.engine import Engine

__all__ = [
    "ItemCounts",
    "ItemFactorDeltas",
    "ItemPairs",
    "ItemSync",
    "ItemUpdates",
    "decode_item_updates",
    "encode_item_updates",
]

#: Version of the encoding written by :func:`encode_item_updates`.
FORMAT_VERSION: Final = 1


class ItemCounts(NamedTuple):
    """Decayed amounts per item: ``values[i]`` for item ``items[i]`` (indexes of ``item_ids``)."""

    items: np.ndarray  # int64
    values: np.ndarray  # float64


class ItemPairs(NamedTuple):
    """Co-occurrence increments: ``amounts[i]`` for the pair ``(first[i], second[i])``."""

    first: np.ndarray  # int64, indexes of item_ids
    second: np.ndarray  # int64
    amounts: np.ndarray  # float64


class ItemFactorDeltas(NamedTuple):
    """Changes of items' latent factors (float32, one row per item) and biases (float64)."""

    items: np.ndarray  # int64, indexes of item_ids
    latents: np.ndarray  # float32, (len(items), n_factors)
    biases: np.ndarray  # float64


def _no_counts() -> ItemCounts:
    return ItemCounts(np.zeros(0, dtype=np.int64), np.zeros(0))


def _no_pairs() -> ItemPairs:
    return ItemPairs(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))


@dataclass(frozen=True, eq=False)
class ItemUpdates:
    """Additive item-side changes of one engine, keyed by item id.

    Every ``items`` / ``first`` / ``second`` array indexes :attr:`item_ids`.
    Decayed amounts are valued at :attr:`reference_time` (see the module
    docstring); :attr:`half_lives` are the sender's (popularity, trending,
    co-occurrence) half-lives, which the receiver's must equal.

    Not guaranteed: that an update names only items the receiver knows (apply
    creates them), or that its reference time is later than the receiver's
    latest event.
    """

    reference_time: float
    half_lives: tuple[float, float, float]
    n_factors: int
    item_ids: tuple[str, ...]
    plays: ItemCounts = field(default_factory=_no_counts)
    recent_plays: ItemCounts = field(default_factory=_no_counts)
    skips: ItemCounts = field(default_factory=_no_counts)
    #: Popularity per (hour bucket, device name) context.
    contexts: dict[tuple[int, str], ItemCounts] = field(default_factory=dict)
    #: Co-occurrence per-item totals (the popularity that damps neighbour scores).
    pair_totals: ItemCounts = field(default_factory=_no_counts)
    pairs: ItemPairs = field(default_factory=_no_pairs)
    factors: ItemFactorDeltas | None = None
    #: Events and skips counted (the global skip share).
    n_events: int = 0
    n_skips: int = 0
    #: The sender's latest event time.
    last_time: float | None = None
    #: River's global mean: weight and sum of the labels learned.
    mean_weight: float = 0.0
    mean_total: float = 0.0

    def counts(self) -> Iterator[tuple[Hashable, ItemCounts]]:
        """Every decayed count, keyed as :class:`ItemSync` keys the vectors."""
        yield "plays", self.plays
        yield "recent_plays", self.recent_plays
        yield "skips", self.skips
        yield "pair_totals", self.pair_totals
        for key, counts in self.contexts.items():
            yield ("context", *key), counts


# ====================================================================== codec
#: Wire types of the arrays (little-endian): item indexes, decayed amounts, factor changes.
_INDEX: Final = np.dtype("<i4")
_AMOUNT: Final = np.dtype("<f8")
_LATENT: Final = np.dtype("<f4")


def _pack(values: np.ndarray, dtype: np.dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _counts_json(counts: ItemCounts) -> list[str]:
    return [_pack(counts.items, _INDEX), _pack(counts.values, _AMOUNT)]


def encode_item_updates(updates: ItemUpdates) -> bytes:
    """``updates`` as JSON bytes (see :func:`decode_item_updates`).

    Arrays are base64 text of their little-endian bytes -- item indexes int32,
    decayed amounts and biases float64 (exact), latent factor changes float32
    (exact: the factors are float32), row after row -- which keeps a message
    about half the size of JSON numbers and its decoding vectorised. Scalars
    and item ids are plain JSON.
    """
    factors = updates.factors
    document: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "reference_time": updates.reference_time,
        "half_lives": list(updates.half_lives),
        "n_factors": updates.n_factors,
        "items": list(updates.item_ids),
        "plays": _counts_json(updates.plays),
        "recent_plays": _counts_json(updates.recent_plays),
        "skips": _counts_json(updates.skips),
        "contexts": [
            [bucket, device, *_counts_json(counts)]
            for (bucket, device), counts in updates.contexts.items()
        ],
        "pair_totals": _counts_json(updates.pair_totals),
        "pairs": [
            _pack(updates.pairs.first, _INDEX),
            _pack(updates.pairs.second, _INDEX),
            _pack(updates.pairs.amounts, _AMOUNT),
        ],
        "factors": None
        if factors is None
        else [
            _pack(factors.items, _INDEX),
            _pack(factors.latents, _LATENT),
            _pack(factors.biases, _AMOUNT),
        ],
        "n_events": updates.n_events,
        "n_skips": updates.n_skips,
        "last_time": updates.last_time,
        "mean": [updates.mean_weight, updates.mean_total],
    }
    return orjson.dumps(document)


def _fail(where: str, problem: str) -> ValueError:
    return ValueError(f"malformed item updates: {where}: {problem}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise _fail(where, "not a finite number")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(where, f"expected a count (an integer >= 0), got {value!r}")
    return value


def _unpack(value: Any, dtype: np.dtype, where: str) -> np.ndarray:
    """A packed array (:func:`_pack`) as a native numpy array; finite when floats."""
    if not isinstance(value, str):
        raise _fail(where, f"expected base64 text, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _fail(where, f"not base64 ({error})") from None
    if len(raw) % dtype.itemsize:
        raise _fail(
            where, f"{len(raw)} bytes is not a whole number of {dtype.itemsize}-byte values"
        )
    values = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise _fail(where, "not all finite numbers")
    return values


def _indexes(value: Any, n_items: int, where: str) -> np.ndarray:
    indexes = _unpack(value, _INDEX, where).astype(np.int64)
    if len(indexes) and (indexes.min() < 0 or indexes.max() >= n_items):
        raise _fail(where, f"item index out of range (the update names {n_items} items)")
    return indexes


def _decode_counts(value: Any, n_items: int, where: str) -> ItemCounts:
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(where, "expected [item indexes, values]")
    items = _indexes(value[0], n_items, f"{where} items")
    values = _unpack(value[1], _AMOUNT, f"{where} values")
    if len(items) != len(values):
        raise _fail(where, f"{len(items)} items but {len(values)} values")
    if len(np.unique(items)) != len(items):
        raise _fail(where, "an item appears twice")
    return ItemCounts(items, values)


def _decode_factors(value: Any, n_items: int, n_factors: int) -> ItemFactorDeltas | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3:
        raise _fail("factors", "expected null or [item indexes, latent changes, bias changes]")
    items = _indexes(value[0], n_items, "factors items")
    if len(np.unique(items)) != len(items):
        raise _fail("factors", "an item appears twice")
    latents = _unpack(value[1], _LATENT, "factors latents")
    if len(latents) != n_factors * len(items):
        raise _fail(
            "factors latents",
            f"{len(latents)} values, expected {len(items)} items x {n_factors} factors",
        )
    biases = _unpack(value[2], _AMOUNT, "factors biases")
    if len(biases) != len(items):
        raise _fail("factors", f"{len(items)} items but {len(biases)} biases")
    return ItemFactorDeltas(items, latents.reshape(len(items), n_factors), biases)


_KEYS: Final = frozenset(
    {
        "version",
        "reference_time",
        "half_lives",
        "n_factors",
        "items",
        "plays",
        "recent_plays",
        "skips",
        "contexts",
        "pair_totals",
        "pairs",
        "factors",
        "n_events",
        "n_skips",
        "last_time",
        "mean",
    }
)


def decode_item_updates(data: bytes) -> ItemUpdates:
    """The :class:`ItemUpdates` that :func:`encode_item_updates` wrote.

    Raises
    ------
    ValueError
        When ``data`` is not such a document; the message names what is wrong.

    Examples
    --------
    >>> decode_item_updates(b'{"version": 1}')
    Traceback (most recent call last):
    ...
    ValueError: malformed item updates: document: missing fields: contexts, factors, ...
    >>> decode_item_updates(b"\\xff")
    Traceback (most recent call last):
    ...
    ValueError: malformed item updates: document: not JSON (...)
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _fail("document", f"not JSON ({error})") from None
    if not isinstance(document, dict):
        raise _fail("document", f"expected an object, got {type(document).__name__}")
    if document.get("version") != FORMAT_VERSION:
        raise _fail("version", f"{document.get('version')!r}, this code reads {FORMAT_VERSION}")
    missing = sorted(_KEYS - set(document))
    if missing:
        raise _fail("document", f"missing fields: {', '.join(missing)}")
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise _fail("document", f"unknown fields: {', '.join(unknown)}")

    item_ids = document["items"]
    if not isinstance(item_ids, list) or not all(isinstance(i, str) and i for i in item_ids):
        raise _fail("items", "expected a list of non-empty item ids")
    if len(set(item_ids)) != len(item_ids):
        raise _fail("items", "an item id appears twice")
    n_items = len(item_ids)
    half_lives = document["half_lives"]
    if not isinstance(half_lives, list) or len(half_lives) != 3:
        raise _fail("half_lives", "expected [popularity, trending, co-occurrence]")
    lives = tuple(_number(h, "half_lives") for h in half_lives)
    if min(lives) <= 0:
        raise _fail("half_lives", "not all positive")
    n_factors = _count(document["n_factors"], "n_factors")

    contexts: dict[tuple[int, str], ItemCounts] = {}
    if not isinstance(document["contexts"], list):
        raise _fail("contexts", "expected a list of [hour bucket, device, items, values]")
    for entry in document["contexts"]:
        if not isinstance(entry, list) or len(entry) != 4:
            raise _fail("contexts", "expected [hour bucket, device, items, values] entries")
        bucket, device = _count(entry[0], "contexts hour bucket"), entry[1]
        if not isinstance(device, str) or not device:
            raise _fail("contexts", f"device {device!r} is not a name")
        if (bucket, device) in contexts:
            raise _fail("contexts", f"context {(bucket, device)} appears twice")
        contexts[(bucket, device)] = _decode_counts(
            entry[2:], n_items, f"contexts {bucket}/{device}"
        )

    pairs = document["pairs"]
    if not isinstance(pairs, list) or len(pairs) != 3:
        raise _fail("pairs", "expected [first items, second items, amounts]")
    first = _indexes(pairs[0], n_items, "pairs first")
    second = _indexes(pairs[1], n_items, "pairs second")
    amounts = _unpack(pairs[2], _AMOUNT, "pairs amounts")
    if not len(first) == len(second) == len(amounts):
        raise _fail("pairs", "first, second and amounts differ in length")
    if (first == second).any():
        raise _fail("pairs", "an item paired with itself")

    last_time = document["last_time"]
    mean = document["mean"]
    if not isinstance(mean, list) or len(mean) != 2:
        raise _fail("mean", "expected [weight, total]")
    n_events = _count(document["n_events"], "n_events")
    n_skips = _count(document["n_skips"], "n_skips")
    if n_skips > n_events:
        raise _fail("n_skips", "more skips than events")
    return ItemUpdates(
        reference_time=_number(document["reference_time"], "reference_time"),
        half_lives=(lives[0], lives[1], lives[2]),
        n_factors=n_factors,
        item_ids=tuple(item_ids),
        plays=_decode_counts(document["plays"], n_items, "plays"),
        recent_plays=_decode_counts(document["recent_plays"], n_items, "recent_plays"),
        skips=_decode_counts(document["skips"], n_items, "skips"),
        contexts=contexts,
        pair_totals=_decode_counts(document["pair_totals"], n_items, "pair_totals"),
        pairs=ItemPairs(first, second, amounts),
        factors=_decode_factors(document["factors"], n_items, n_factors),
        n_events=n_events,
        n_skips=n_skips,
        last_time=None if last_time is None else _number(last_time, "last_time"),
        mean_weight=_number(mean[0], "mean weight"),
        mean_total=_number(mean[1], "mean total"),
    )


# ====================================================================== bookkeeping
def _rows_array(rows: Collection[int]) -> np.ndarray:
    return np.fromiter(sorted(rows), dtype=np.int64, count=len(rows))


class ItemSync:
    """What of one engine's item-side state its updates have already carried.

    Held by :class:`~stream.engine.Engine` (``engine.item_sync``) from its first
    take or apply on, and pickled with it. ``learn`` records which rows it
    changed (:attr:`touched`, :attr:`mf_touched`) and the co-occurrence pair
    increments (:attr:`journal`); a take sends, for those rows, the current
    value minus the *base* -- the value at the previous take, plus whatever was
    applied since -- and moves the base to the current value. An apply adds to
    value and base alike, so it never shows in a take.

    Nothing is kept for the rows unchanged since the last take: a worker holds no
    second copy of the factor matrix (~140 bytes per item) nor of the count
    vectors (8 bytes per item and vector, and there is a vector per context).
    :attr:`mf_touched` maps each row whose factors changed since the last take to
    its factors and bias before the first of those changes (``None``: the item's
    initial factors, recomputed from seed and id when needed). Each decayed count
    vector journals the increments learning made since the last take
    (:attr:`DecayingVector.journal`, in the vector's forward-decay frame; what an
    apply adds is not journaled), and a take sends and clears them. A pickle keeps
    just the changes not yet taken (:meth:`packed`, :meth:`unpack`, called by the
    engine's pickling): snapshots grow with them, not with the catalog.
    """

    def __init__(self, half_life: float) -> None:
        self.touched: set[int] = set()
        #: row -> (factors, bias) before its first change since the last take (None: initial)
        self.mf_touched: dict[int, tuple[np.ndarray, float] | None] = {}
        self.journal = PairJournal(half_life)
        self.n_events = 0
        self.n_skips = 0
        self.mean = (0.0, 0.0)
        self.n_taken = 0
        self.n_applied = 0
        # Set on a packed copy only (for pickling): what the bases hold beyond the engine's values
        # (the factor bases; the count vectors carry their journals themselves).
        self.pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def started(cls, engine: Engine) -> ItemSync:
        """Bookkeeping that owes everything: the first take sends all the engine learned.

        Used by an engine that learned before its first take or apply (with
        nothing applied yet, everything it holds is its own learning).
        """
        sync = cls(engine.cooccurrence.half_life)
        sync.touched = set(range(len(engine.items)))
        sync.mf_touched = dict.fromkeys(engine.factors.learned_rows)  # owed since the initial
        cooc = engine.cooccurrence
        if cooc.origin is not None:
            first, second, strengths = cooc.kept_pairs()
            sync.journal.append(first, second, strengths, at=cooc.origin)
        for _, vector in sync._vectors(engine):  # all of it owed, as if journaled so far
            values = vector.values
            rows = np.flatnonzero(values)
            vector.journal = dict(zip(rows.tolist(), values[rows].tolist(), strict=True))
        engine.popularity.journal_new_vectors = True
        return sync

    @classmethod
    def settled(cls, engine: Engine) -> ItemSync:
        """Bookkeeping that owes nothing: everything the engine holds counts as shared.

        For engines restored from snapshots older than item updates (their
        items' initial factors were random, so "since the start" is unknown).
        """
        sync = cls(engine.cooccurrence.half_life)
        for _, vector in sync._vectors(engine):
            vector.journal = {}
        engine.popularity.journal_new_vectors = True
        sync.n_events = engine.popularity.n_events
        sync.n_skips = engine.popularity.n_skips
        sync.mean = engine.factors.mean_state()
        return sync  # no factors owed: every row's base is its value

    # ------------------------------------------------------------------ pickling
    def packed(self, engine: Engine) -> ItemSync:
        """A copy of this bookkeeping without the bases, for pickling with ``engine``.

        Only the rows changed since the last take keep their bases;
        :meth:`unpack` rebuilds the rest from the engine's values (everywhere
        else the base equals the value, bit for bit: applies add the same to both).
        """
        rows = _rows_array(self.touched)
        factor_rows = _rows_array(self.mf_touched)
        kept = [self.mf_touched[row] for row in factor_rows.tolist()]
        factor_base = np.zeros((len(kept), engine.factors.n_factors), dtype=np.float32)
        bias_base = np.zeros(len(kept))
        for i, base in enumerate(kept):
            if base is not None:
                factor_base[i], bias_base[i] = base
        packed = copy.copy(self)
        packed.mf_touched = {}  # in pending
        packed.pending = {
            "rows": rows,
            "counts": None,  # journaled in the vectors (pickled with the engine)
            "factor_rows": factor_rows,
            "factor_base": factor_base,
            "bias_base": bias_base,
            "has_base": np.array([base is not None for base in kept], dtype=bool),
        }
        return packed

    def unpack(self, engine: Engine) -> None:
        """Rebuild the bases of a :meth:`packed` copy, now that ``engine`` is restored."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending["counts"] is not None:
            # Pickled when the bases of the count vectors were full copies: the bases of the
            # rows changed since the take, whose increments since are the journal.
            size = len(engine.items)
            rows = pending["rows"]
            for key, vector in self._vectors(engine):
                kept = pending["counts"].get(key)  # None: a vector new since, base 0
                owed = vector.raw(size)[rows] - (0.0 if kept is None else kept)
                changed = np.flatnonzero(owed)
                vector.journal = dict(
                    zip(rows[changed].tolist(), owed[changed].tolist(), strict=True)
                )
            engine.popularity.journal_new_vectors = True
        self.__dict__.pop("bases", None)
        # (Pickles made when the factor bases were full arrays carry them empty.)
        for name in ("factor_base", "bias_base", "has_base"):
            self.__dict__.pop(name, None)
        self.mf_touched = {
            row: (pending["factor_base"][i].copy(), float(pending["bias_base"][i]))
            if pending["has_base"][i]
            else None
            for i, row in enumerate(pending["factor_rows"].tolist())
        }

    # ------------------------------------------------------------------ take
    def take(self, engine: Engine) -> ItemUpdates | None:
        """The changes ``engine`` learned since the last take (``None`` if none)."""
        popularity = engine.popularity
        n_events = popularity.n_events - self.n_events
        if not (self.touched or self.mf_touched or len(self.journal) or n_events):
            return None
        ref = popularity.last_time
        if ref is None:  # nothing counted: only possible for an engine without events
            ref = 0.0
        counts: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}
        for key, vector in self._vectors(engine):
            journal, vector.journal = vector.journal, {}
            if not journal:  # (None: a vector that did not journal owes nothing known)
                continue
            rows = _rows_array(journal)
            delta = np.array([journal[row] for row in rows.tolist()])
            changed = np.flatnonzero(delta)
            if len(changed):
                scale = 2.0 ** ((vector.origin - ref) / vector.half_life)
                counts[key] = (rows[changed], delta[changed] * scale)
        first, second, amounts = self.journal.coalesced(at=ref)
        factor_rows, latents, biases = self._take_factors(engine)
        weight, total = engine.factors.mean_state()
        mean_weight, mean_total = weight - self.mean[0], total - self.mean[1]
        self.mean = (weight, total)
        n_skips = popularity.n_skips - self.n_skips
        self.n_events, self.n_skips = popularity.n_events, popularity.n_skips
        self.touched = set()
        self.mf_touched = {}
        self.journal.clear()
        self.n_taken += 1

        if not (counts or len(amounts) or len(factor_rows) or n_events or mean_weight):
            return None  # touched, but nothing changed (say, all of it was applied)
        mentioned = [rows for rows, _ in counts.values()]
        mentioned.extend([first, second, factor_rows])
        table = np.unique(np.concatenate(mentioned)) if mentioned else np.zeros(0, np.int64)

        def index(rows: np.ndarray) -> np.ndarray:
            return np.searchsorted(table, rows).astype(np.int64)

        def item_counts(key: Hashable) -> ItemCounts:
            found = counts.get(key)
            return _no_counts() if found is None else ItemCounts(index(found[0]), found[1])

        contexts = {
            (key[1], key[2]): item_counts(key)
            for key in counts
            if isinstance(key, tuple) and key[0] == "context"
        }
        config = engine.config
        ids = engine.items.ids
        return ItemUpdates(
            reference_time=float(ref),
            half_lives=(
                config.popularity_half_life,
                config.trending_half_life,
                config.cooc_half_life,
            ),
            n_factors=engine.factors.n_factors,
            item_ids=tuple(ids[row] for row in table.tolist()),
            plays=item_counts("plays"),
            recent_plays=item_counts("recent_plays"),
            skips=item_counts("skips"),
            contexts=contexts,
            pair_totals=item_counts("pair_totals"),
            pairs=ItemPairs(index(first), index(second), amounts),
            factors=ItemFactorDeltas(index(factor_rows), latents, biases)
            if len(factor_rows)
            else None,
            n_events=n_events,
            n_skips=n_skips,
            last_time=popularity.last_time if n_events else None,
            mean_weight=mean_weight,
            mean_total=mean_total,
        )

    def _take_factors(self, engine: Engine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        factors = engine.factors
        rows = _rows_array(self.mf_touched)
        if not len(rows):
            return rows, np.zeros((0, factors.n_factors), dtype=np.float32), np.zeros(0)
        latents, biases = factors.item_parameters(rows)
        base_latents, base_biases = self._factor_bases(engine, rows)
        delta_latents = latents - base_latents
        delta_biases = biases - base_biases
        changed = (delta_latents != 0).any(axis=1) | (delta_biases != 0)
        return rows[changed], delta_latents[changed], delta_biases[changed]

    # ------------------------------------------------------------------ apply
    def apply(self, engine: Engine, updates: ItemUpdates) -> None:
        """Add ``updates`` to ``engine`` and to the bases (so they are never sent on)."""
        self.check(engine, updates)
        items = engine.items
        rows = np.array([items.add(item_id) for item_id in updates.item_ids], dtype=np.int64)
        ref = updates.reference_time
        popularity = engine.popularity
        for key, counts in updates.counts():
            if not len(counts.items):
                continue
            if isinstance(key, tuple):
                context, vector = popularity.context_counts(key[1], key[2])
                key = ("context", *context)
            else:
                vector = self._vector(engine, key)
            vector.add_many(rows[counts.items], counts.values, at=ref)  # not journaled
        if len(rows):
            popularity.n_rows = max(popularity.n_rows, int(rows.max()) + 1)
        popularity.n_events += updates.n_events
        popularity.n_skips += updates.n_skips
        self.n_events += updates.n_events
        self.n_skips += updates.n_skips
        if updates.last_time is not None:
            latest = popularity.last_time
            popularity.last_time = (
                updates.last_time if latest is None else max(latest, updates.last_time)
            )

        pairs = updates.pairs
        engine.cooccurrence.add_pairs(rows[pairs.first], rows[pairs.second], pairs.amounts, at=ref)

        deltas = updates.factors
        if deltas is not None and len(deltas.items):
            targets = rows[deltas.items]
            ids = [updates.item_ids[i] for i in deltas.items.tolist()]
            # An item new here starts from its base: the initial factors, as everywhere.
            base_latents, base_biases = self._factor_bases(engine, targets)
            engine.factors.add_to_items(
                targets, ids, deltas.latents, deltas.biases, starts=base_latents
            )
            touched = self.mf_touched
            for i, row in enumerate(targets.tolist()):
                if row in touched:  # elsewhere the base is the value, which moved alike
                    touched[row] = (
                        base_latents[i] + deltas.latents[i],
                        float(base_biases[i] + deltas.biases[i]),
                    )
        engine.factors.add_to_mean(updates.mean_weight, updates.mean_total)
        self.mean = (self.mean[0] + updates.mean_weight, self.mean[1] + updates.mean_total)
        self.n_applied += 1

    @staticmethod
    def check(engine: Engine, updates: ItemUpdates) -> None:
        """Raise ``ValueError`` unless ``engine`` is configured as ``updates``' sender was."""
        config = engine.config
        ours = (config.popularity_half_life, config.trending_half_life, config.cooc_half_life)
        if tuple(updates.half_lives) != ours:
            raise ValueError(f"item updates with half-lives {updates.half_lives}, ours are {ours}")
        if updates.n_factors != engine.factors.n_factors:
            raise ValueError(
                f"item updates with {updates.n_factors} latent factors, "
                f"ours have {engine.factors.n_factors}"
            )
        for bucket, _ in updates.contexts:
            if not 0 <= bucket < config.hour_buckets:
                raise ValueError(
                    f"item updates for hour bucket {bucket}, ours are 0..{config.hour_buckets - 1}"
                )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _vectors(engine: Engine) -> Iterator[tuple[Hashable, DecayingVector]]:
        popularity = engine.popularity
        yield "plays", popularity.plays
        yield "recent_plays", popularity.recent_plays
        yield "skips", popularity.skips
        yield "pair_totals", engine.cooccurrence.totals
        for key, vector in popularity.by_context.items():
            yield ("context", *key), vector

    @staticmethod
    def _vector(engine: Engine, key: Hashable) -> DecayingVector:
        popularity = engine.popularity
        vectors = {
            "plays": popularity.plays,
            "recent_plays": popularity.recent_plays,
            "skips": popularity.skips,
            "pair_totals": engine.cooccurrence.totals,
        }
        return vectors[key]  # type: ignore[index]

    def _factor_bases(self, engine: Engine, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base factors and biases of ``rows`` changed since the last take (kept before the
        first change, else the initial ones) and of rows the model does not know (the initial
        ones); zeros for the others (their base is their value)."""
        factors = engine.factors
        latents = np.zeros((len(rows), factors.n_factors), dtype=np.float32)
        biases = np.zeros(len(rows))
        ids, touched, learned = engine.items.ids, self.mf_touched, factors.learned
        for i, row in enumerate(rows.tolist()):
            if row in touched:
                base = touched[row]
                if base is not None:
                    latents[i], biases[i] = base
                    continue
            elif row < len(learned) and learned[row]:
                continue
            latents[i] = factors.initial_latents(ids[row])
        return latents, biases
