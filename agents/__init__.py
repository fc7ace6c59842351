"""Thin Faust agents: decode -> call the engine -> send. One agent per module.

They share one :class:`stream.pipeline.Pipeline` per worker process (the engine's
hot state lives in memory, not in per-event table writes). Event topics are read
by batch agents (``app.batch_agent``, see :mod:`stream.batching`): a handler gets a
chunk of one partition's records, in offset order, and its offsets are committed
only after it returned.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError

from stream.allocator import fix_mmap_threshold
from stream.checkpoint import Checkpointer
from stream.contracts import Rejection, encode_dead_letter
from stream.engine import Engine, EngineConfig
from stream.experiments import Experiment
from stream.item_sharing import take_item_update
from stream.metrics import PartitionProgress, WorkerMetrics
from stream.pipeline import Pipeline
from stream.settings import get_settings
from stream.warmup import warm_up
from stream.wrapped import ListeningHistory

logger = logging.getLogger(__name__)


@functools.cache
def worker_pipeline() -> Pipeline:
    """The pipeline of this worker process, created on first use."""
    settings = get_settings()
    engine = Engine(EngineConfig(seed=settings.seed, row_size=settings.row_size))
    return Pipeline(
        engine,
        max_event_bytes=settings.max_event_bytes,
        max_event_future=settings.max_event_future_seconds,
        max_event_age=settings.max_event_age_seconds,
        dedupe_window=settings.dedupe_window,
        unknown_items=settings.unknown_items,
        served_lists=settings.served_lists,
        forgotten_users_max=settings.forgotten_users_max,
        experiment=Experiment(settings.experiment_id, settings.holdout_share),
        history=ListeningHistory(settings.wrapped_months, settings.wrapped_max_entries),
        rerank_after=settings.rerank_after_seconds,
    )


def worker_name() -> str:
    """This worker's name among the workers of its group: ``ENCORE_WORKER_ID``, else the
    host name (one worker per host, e.g. a container)."""
    return get_settings().worker_id or socket.gethostname()


@functools.cache
def worker_checkpointer() -> Checkpointer:
    """Checkpoints of :func:`worker_pipeline` in the (shared) checkpoint directory.

    Before each checkpoint the item updates learned so far are taken (and kept
    with the checkpoint until delivered): see :mod:`stream.item_sharing`.
    """
    settings = get_settings()
    return Checkpointer(
        settings.checkpoint_dir or settings.data_dir / "checkpoints",
        worker_pipeline(),
        interval=settings.checkpoint_interval_seconds,
        max_cpu_share=settings.checkpoint_max_cpu_share,
        name=worker_name(),
        before_write=lambda: take_item_update(worker_pipeline(), worker_name()),
    )


def open_worker_state() -> None:
    """Load the compiled code (:mod:`stream.warmup`), restore the latest checkpoint and hand
    the state to the batch consumer.

    Runs once before the consumer starts (``EncoreApp.open_state``).
    """
    from stream.app import app

    fix_mmap_threshold()  # before the state grows: see stream.allocator
    seconds = warm_up(worker_pipeline().engine.config)
    logger.info("compiled code loaded in %.2fs", seconds)

    checkpointer = worker_checkpointer()
    checkpointer.restore()
    app.batch_progress = worker_pipeline()
    app.checkpointer = checkpointer


def assigned_partitions() -> set[tuple[str, int]]:
    """``(topic, partition)`` assigned to this worker (empty before its consumer started)."""
    from stream.app import app

    try:
        return set(app.consumer.assignment())
    except Exception:  # noqa: BLE001 - Faust raises ConsumerNotStarted before the start
        return set()


def partition_progress() -> list[PartitionProgress]:
    """Offsets of every partition assigned to this worker (empty before it started)."""
    from stream.app import app

    progress = getattr(app.consumer, "partition_progress", None)
    try:
        return [] if progress is None else progress()
    except Exception:  # noqa: BLE001 - as above
        return []


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """The Prometheus registry of this worker process."""
    return WorkerMetrics(worker_pipeline(), partition_progress)


def _transient(error: BaseException) -> bool:
    """A send that may succeed later: the broker was away for the producer's whole timeout."""
    if isinstance(error, ProducerSendError):  # Faust's wrapper of send()'s KafkaError
        error = error.__cause__ or error
    return isinstance(error, KafkaTimeoutError) or getattr(error, "retriable", False) is True


async def ingest_or_dead_letter(records: Sequence[Any], ingest: Callable[..., object]) -> None:
    """Hand each record's value (``None`` for a tombstone) and key to ``ingest``; each
    :class:`Rejection` it returns becomes a dead letter (for the whole-topic readers)."""
    for record in records:
        outcome = ingest(record.value, key=record.key)
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)


async def send_dead_letter(record: Any, rejection: Rejection) -> None:
    """Publish ``rejection`` for a consumed ``record``, with its original bytes.

    Waits until the broker has it: the record's offset is committed after this
    returns, so a dead letter is never lost with its offset. A broker away for longer
    than ``producer_request_timeout`` makes the send time out: it is sent again (the
    chunk waits, as it would have) instead of stopping the worker. Other errors
    (a record too large, no authorization) propagate.
    """
    from stream.app import app
    from stream.topics import dead_letters_topic

    letter = encode_dead_letter(
        rejection,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        rejected_at=time.time(),
    )
    while True:
        try:
            delivery = await app.producer.send(
                dead_letters_topic.get_topic_name(),
                record.key,
                letter,
                None,  # partition: by key
                None,  # timestamp: now
                None,  # headers
            )
            await delivery
            return
        except (ProducerSendError, KafkaError) as error:
            if not _transient(error):
                raise
            logger.warning(
                "dead letter for %s[%d]@%d not delivered (%r); sending it again",
                record.topic,
                record.partition,
                record.offset,
                error,
            )
