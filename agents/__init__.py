"""Thin Faust agents: decode -> call the engine -> send. One agent per module.

They share one :class:`stream.pipeline.Pipeline` per worker process (the engine's
hot state lives in memory, not in per-event table writes). Event topics are read
by batch agents (``app.batch_agent``, see :mod:`stream.batching`): a handler gets a
chunk of one partition's records, in offset order, and its offsets are committed
only after it returned.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from stream.checkpoint import Checkpointer
from stream.contracts import Rejection, encode_dead_letter
from stream.engine import Engine, EngineConfig
from stream.experiments import Experiment
from stream.metrics import PartitionProgress, WorkerMetrics
from stream.pipeline import Pipeline
from stream.settings import get_settings
from stream.wrapped import ListeningHistory


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
    )


@functools.cache
def worker_checkpointer() -> Checkpointer:
    """Checkpoints of :func:`worker_pipeline` under the data dir."""
    settings = get_settings()
    return Checkpointer(
        settings.data_dir / "checkpoints",
        worker_pipeline(),
        interval=settings.checkpoint_interval_seconds,
    )


def open_worker_state() -> None:
    """Restore the latest checkpoint and hand the state to the batch consumer.

    Runs once before the consumer starts (``EncoreApp.open_state``).
    """
    from stream.app import app

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


async def send_dead_letter(record: Any, rejection: Rejection) -> None:
    """Publish ``rejection`` for a consumed ``record``, with its original bytes.

    Waits until the broker has it: the record's offset is committed after this
    returns, so a dead letter is never lost with its offset.
    """
    from stream.app import app
    from stream.topics import dead_letters_topic

    delivery = await app.producer.send(
        dead_letters_topic.get_topic_name(),
        record.key,
        encode_dead_letter(
            rejection,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            rejected_at=time.time(),
        ),
        None,  # partition: by key
        None,  # timestamp: now
        None,  # headers
    )
    await delivery
