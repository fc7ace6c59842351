"""Thin Faust agents: decode -> call the engine -> send. One agent per module.

They share one :class:`stream.pipeline.Pipeline` per worker process (the engine's
hot state lives in memory, not in per-event table writes).
"""

from __future__ import annotations

import functools
import time
from typing import Any

from stream.contracts import Rejection, encode_dead_letter
from stream.engine import Engine, EngineConfig
from stream.pipeline import Pipeline
from stream.settings import get_settings


@functools.cache
def worker_pipeline() -> Pipeline:
    """The pipeline of this worker process, created on first use."""
    settings = get_settings()
    engine = Engine(EngineConfig(seed=settings.seed, row_size=settings.row_size))
    return Pipeline(engine, max_event_bytes=settings.max_event_bytes)


async def send_dead_letter(event: Any, rejection: Rejection) -> None:
    """Publish ``rejection`` for the Faust ``event`` it came from, with the original bytes."""
    from stream.topics import dead_letters_topic

    message = event.message
    await dead_letters_topic.send(
        key=event.key,
        value=encode_dead_letter(
            rejection,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=event.key,
            value=event.value,
            rejected_at=time.time(),
        ),
    )
