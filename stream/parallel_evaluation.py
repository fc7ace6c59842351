"""Prequential evaluation split by user over several processes that share item state.

One process runs the protocol of :mod:`stream.evaluation` at the speed of one
core. Workers scale out the same way this module does: each owns a share of
the users (by a hash of the user id), learns their events, and sends the item
side of what it learned (popularity, co-occurrence, item factors; see
:mod:`stream.engine.item_updates`) to the others, which add it to theirs.
:func:`evaluate_in_processes` evaluates exactly that: every event is tested and
learned by its user's process, and every ``sync_every`` events of the log all
processes exchange item updates, in lock step, so the run is deterministic.

What differs from one process: between two exchanges a process has not yet
seen the other processes' latest item changes, and its skip model and
Discover bandit learn from its own users only. :class:`SharingReplicas` runs
the same computation in one process (slowly); the report of
:func:`evaluate_in_processes` equals its report, timing aside.

The model needs ``take_item_updates`` and ``apply_item_updates`` (the engine
and its ablations have them; the baselines do not). It is built and given the
catalog once, in this process; each process starts from a copy (inherited by
``fork``, pickled otherwise).

>>> from stream.engine import Engine, EngineConfig
>>> from stream.models import EventType, Interaction
>>> log = [Interaction(f"e{n}", f"u{n % 5}", f"t{n % 7}", EventType.PLAY, float(n))
...        for n in range(60)]
>>> report = evaluate_in_processes(log, Engine(EngineConfig(seed=0)), processes=2,
...                                sync_every=10)
>>> report.events, report.processes, report.sync_every
(60, 2, 10)
>>> reference = evaluate(log, SharingReplicas(Engine(EngineConfig(seed=0)), 2, sync_every=10))
>>> (report.hits, report.eligible, report.skip_auc) == (
...     reference.hits, reference.eligible, reference.skip_auc)
True
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import pickle
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any, Final

from stream.evaluation import (
    EvaluationReport,
    Recommender,
    Tally,
    _expected_total,
    _ProgressBar,
    evaluate,
    out_of_order,
)
from stream.models import CatalogItem, Interaction

__all__ = [
    "DEFAULT_SYNC_EVERY",
    "SharingReplicas",
    "can_share_items",
    "evaluate_in_processes",
    "process_of",
]

#: Events of the log between two exchanges of item updates. At 20,000 events/s
#: that is a tenth of a second, ten times more often than workers exchange (1 s).
DEFAULT_SYNC_EVERY: Final = 2_000

_PICKLE: Final = pickle.HIGHEST_PROTOCOL


def process_of(user_id: str, processes: int) -> int:
    """Which of ``processes`` answers for ``user_id``: a stable hash (CRC-32), not Python's.

    >>> [process_of(user, 2) for user in ("ann", "bob", "cat", "dan")]
    [1, 0, 0, 1]
    """
    return zlib.crc32(user_id.encode()) % processes


def _owners(processes: int) -> Callable[[str], int]:
    """:func:`process_of` for ``processes``, remembered per user (each user has many events)."""
    known: dict[str, int] = {}

    def owner(user_id: str) -> int:
        process = known.get(user_id)
        if process is None:
            process = known[user_id] = process_of(user_id, processes)
        return process

    return owner


def can_share_items(model: Any) -> bool:
    """Whether ``model`` can send and receive item updates (needed for several processes).

    >>> from stream.engine.baselines import PopularityRecommender
    >>> can_share_items(PopularityRecommender())
    False
    """
    return callable(getattr(model, "take_item_updates", None)) and callable(
        getattr(model, "apply_item_updates", None)
    )


class SharingReplicas:
    """Copies of one model as one recommender, in one process: the reference computation.

    Each user's events go to one copy (:func:`process_of`); after every
    ``sync_every`` events each copy takes its item updates and every other copy
    applies them, in copy order. ``rank`` and ``predict_skip`` ask the user's
    copy. :func:`evaluate_in_processes` computes the same thing in parallel.

    With ``wire=True`` the updates go through the encoding workers send
    (:func:`~stream.engine.item_updates.encode_item_updates`), and
    :attr:`bytes_sent` counts its bytes.

    >>> from stream.engine import Engine, EngineConfig
    >>> from stream.models import EventType
    >>> shared = SharingReplicas(Engine(EngineConfig(seed=0)), 2, sync_every=2, wire=True)
    >>> for n, user in enumerate(["ann", "bob", "cat", "dan"]):
    ...     shared.learn(Interaction(f"e{n}", user, "t1", EventType.PLAY, float(n)))
    >>> shared.exchanges, [model.popularity.n_events for model in shared.models]
    (2, [4, 4])
    """

    def __init__(self, model: Any, replicas: int, *, sync_every: int, wire: bool = False) -> None:
        if not can_share_items(model):
            raise ValueError(f"{type(model).__name__} cannot share item updates")
        if replicas < 1 or sync_every < 1:
            raise ValueError("replicas and sync_every must be at least 1")
        self.models = [copy.deepcopy(model) for _ in range(replicas)]
        self.sync_every = sync_every
        self.wire = wire
        self.n_events = 0
        self.exchanges = 0
        self.bytes_sent = 0
        self.name = getattr(model, "name", None) or type(model).__name__

    def _model(self, user_id: str) -> Any:
        return self.models[process_of(user_id, len(self.models))]

    def upsert_item(self, item: CatalogItem) -> None:
        for model in self.models:
            model.upsert_item(item)

    def learn(self, event: Interaction) -> None:
        self._model(event.user_id).learn(event)
        self.n_events += 1
        if self.n_events % self.sync_every == 0:
            self.exchange()

    def exchange(self) -> None:
        """Every copy takes its updates; every other copy applies them."""
        from stream.engine.item_updates import decode_item_updates, encode_item_updates

        sent = [model.take_item_updates() for model in self.models]
        for source, updates in enumerate(sent):
            if updates is None:
                continue
            data = encode_item_updates(updates) if self.wire else None
            self.bytes_sent += 0 if data is None else len(data)
            for target, model in enumerate(self.models):
                if target != source:
                    model.apply_item_updates(updates if data is None else decode_item_updates(data))
        self.exchanges += 1

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
        ranking: list[str] = self._model(user_id).rank(user_id, k, now=now)
        return ranking

    def predict_skip(self, event: Interaction) -> float:
        return float(self._model(event.user_id).predict_skip(event))


def evaluate_in_processes(
    events: Iterable[Interaction],
    model: Recommender,
    *,
    processes: int = 2,
    sync_every: int = DEFAULT_SYNC_EVERY,
    catalog: Sequence[CatalogItem] | None = None,
    k: int = 10,
    progress: bool = False,
    limit: int | None = None,
    name: str | None = None,
    start_method: str | None = None,
) -> EvaluationReport:
    """:func:`~stream.evaluation.evaluate`, split by user over ``processes`` processes.

    Parameters
    ----------
    events, catalog, k, progress, limit, name
        As for :func:`~stream.evaluation.evaluate`. ``events`` is read once,
        in this process, a window of ``sync_every`` events at a time (a
        generator over a large file is fine).
    model
        A model with ``take_item_updates`` / ``apply_item_updates``. It is
        given the catalog here and copied to each process; it is not trained
        itself (unlike with ``evaluate``).
    processes
        How many processes; 1 is :func:`~stream.evaluation.evaluate` itself.
    sync_every
        Events of the log between two exchanges of item updates.
    start_method
        ``multiprocessing`` start method; default ``fork`` where there is one
        (the model is inherited, not pickled), else ``spawn``.

    Returns
    -------
    EvaluationReport
        The counts of every process added up; ``seconds`` is the wall clock
        from starting the processes to the last count received.

    Raises
    ------
    ValueError
        For a decreasing timestamp in ``events``, a model that cannot share
        item updates, or a bad setting.
    RuntimeError
        When a process fails (with its traceback) or dies.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    if processes == 1:
        return evaluate(
            events, model, catalog=catalog, k=k, progress=progress, limit=limit, name=name
        )
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if sync_every < 1:
        raise ValueError(f"sync_every must be at least 1, not {sync_every}")
    if not can_share_items(model):
        raise ValueError(
            f"{name or type(model).__name__} cannot share item updates "
            "(no take_item_updates/apply_item_updates): evaluate it in one process"
        )
    model_name = name or getattr(model, "name", None) or type(model).__name__
    total = Tally(k)
    total.add_catalog(model, catalog)
    if start_method is None:
        start_method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(start_method)
    bar: _ProgressBar | None = None
    started = time.perf_counter()
    # A forked process inherits a sequence of events: each reads its users' events from
    # it, and only ranges are sent. Otherwise the events go pickled through the pipes.
    shared = start_method == "fork" and isinstance(events, Sequence)
    log = events if shared else None
    # Processes start before the progress bar: a fork must not copy its drawing thread.
    shards = [_Shard(context, model, index, processes, k, log) for index in range(processes)]
    try:
        if progress:
            bar = _ProgressBar(_expected_total(events, limit))
        windows = _windows(events, processes, sync_every, limit, shared)
        _exchange_in_lock_step(shards, windows, bar)
        for shard in shards:
            total.merge(shard.finish())
    finally:
        for shard in shards:
            shard.stop()
        if bar is not None:
            bar.close(total.processed)
    seconds = time.perf_counter() - started
    return total.report(model_name, seconds, processes=processes, sync_every=sync_every)


def _windows(
    events: Iterable[Interaction],
    processes: int,
    sync_every: int,
    limit: int | None,
    shared: bool,
) -> Iterator[list[Any]]:
    """Each window of ``sync_every`` events, for each process: its events, pickled, or
    with ``shared`` (processes that inherited ``events``, a sequence) the window's range."""
    owner = _owners(processes)
    last_time = -math.inf
    taken = 0
    batches: list[list[Interaction]] = [[] for _ in range(processes)]
    window_start = 0
    for event in events:
        if limit is not None and taken >= limit:
            break
        at = event.timestamp
        if at < last_time:
            raise out_of_order(event, last_time)
        last_time = at
        if not shared:
            batches[owner(event.user_id)].append(event)
        taken += 1
        if taken - window_start == sync_every:
            yield _window(batches, window_start, taken, shared)
            batches = [[] for _ in range(processes)]
            window_start = taken
    if taken > window_start:
        yield _window(batches, window_start, taken, shared)


def _window(batches: list[list[Interaction]], start: int, stop: int, shared: bool) -> list[Any]:
    if shared:
        return [(start, stop)] * len(batches)
    return [pickle.dumps(batch, _PICKLE) for batch in batches]


def _exchange_in_lock_step(
    shards: list[_Shard], windows: Iterator[list[Any]], bar: _ProgressBar | None
) -> None:
    """Send each window to the processes with the item updates they owe each other."""
    owed: list[list[bytes]] = [[] for _ in shards]
    window = next(windows, None)
    while window is not None:
        for shard, updates, batch in zip(shards, owed, window, strict=True):
            shard.send(updates, batch)
        # The next window is read and pickled while the processes learn this one.
        window = next(windows, None)
        sent = [shard.receive_updates() for shard in shards]
        owed = [
            [updates for source, updates in enumerate(sent) if source != target and updates]
            for target in range(len(shards))
        ]
        if bar is not None:
            bar.advance(sum(shard.processed for shard in shards))


class _Shard:
    """One evaluation process and this side of its pipe."""

    def __init__(
        self,
        context: Any,
        model: Any,
        index: int,
        processes: int,
        k: int,
        log: Sequence[Interaction] | None,
    ) -> None:
        self.index = index
        self.processes = processes
        self.processed = 0
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_shard_main,
            args=(model, k, child_end, index, processes, log),
            name=f"encore-evaluate-{index + 1}-of-{processes}",
            daemon=True,
        )
        self.process.start()
        child_end.close()

    def send(self, updates: list[bytes], batch: bytes | tuple[int, int]) -> None:
        self.connection.send_bytes(pickle.dumps((updates, batch), _PICKLE))

    def _receive(self, expected: str) -> Any:
        try:
            kind, *payload = pickle.loads(self.connection.recv_bytes())
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise RuntimeError(
                f"evaluation process {self.index + 1} of {self.processes} ended unexpectedly "
                f"(exit code {self.process.exitcode})"
            ) from None
        if kind == "error":
            raise RuntimeError(
                f"evaluation process {self.index + 1} of {self.processes} failed:\n{payload[0]}"
            )
        if kind != expected:
            raise RuntimeError(f"evaluation process {self.index + 1} sent {kind!r}, not {expected}")
        return payload

    def receive_updates(self) -> bytes | None:
        """The item updates this process's model took after its window (pickled)."""
        self.processed, updates = self._receive("updates")
        return updates  # type: ignore[no-any-return]

    def finish(self) -> Tally:
        """Tell the process the log has ended; its tally."""
        self.connection.send_bytes(b"")
        (tally,) = self._receive("tally")
        self.process.join(timeout=30)
        return tally  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=5)
        self.connection.close()


def _shard_main(
    model: Any,
    k: int,
    connection: Connection,
    index: int,
    processes: int,
    log: Sequence[Interaction] | None,
) -> None:
    """An evaluation process: apply what the others learned, evaluate a window, send updates.

    A window is its events (pickled) or, when the process inherited the ``log``,
    a range of it, of which it takes its users' events.
    """
    tally = Tally(k)
    owner = _owners(processes)

    def mine(window: tuple[int, int]) -> Iterator[Interaction]:
        assert log is not None
        for event in log[window[0] : window[1]]:
            if owner(event.user_id) == index:
                yield event

    try:
        while message := connection.recv_bytes():
            owed, batch = pickle.loads(message)
            for updates in owed:
                model.apply_item_updates(pickle.loads(updates))
            tally.consume(mine(batch) if isinstance(batch, tuple) else pickle.loads(batch), model)
            taken = model.take_item_updates()
            sent = None if taken is None else pickle.dumps(taken, _PICKLE)
            connection.send_bytes(pickle.dumps(("updates", tally.processed, sent), _PICKLE))
        connection.send_bytes(pickle.dumps(("tally", tally.without_users()), _PICKLE))
    except BaseException as error:  # reported to the parent, which raises it
        text = "".join(traceback.format_exception(error))
        try:
            connection.send_bytes(pickle.dumps(("error", text), _PICKLE))
        except OSError:  # the parent has gone
            pass
    finally:
        connection.close()
