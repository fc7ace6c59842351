"""Consume plays, skips and replays: validate, learn, dead-letter what is bad."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import TP

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.topics import EVENT_TYPE_TOPICS

_EVENT_TYPE_BY_TOPIC = {topic.get_topic_name(): kind for kind, topic in EVENT_TYPE_TOPICS.items()}


@app.batch_agent(*EVENT_TYPE_TOPICS.values())
async def learn_from_interactions(tp: TP, records: Sequence[Any]) -> None:
    pipeline = worker_pipeline()
    event_type = _EVENT_TYPE_BY_TOPIC[tp.topic]
    for record in records:
        # (key bytes, raw value bytes, Kafka timestamp ms) of one partition, in offset order
        outcome = pipeline.ingest_event(
            record.value,
            key=record.key,
            event_type=event_type,
            produced_at=record.timestamp / 1000 if record.timestamp is not None else None,
            source=(tp.topic, tp.partition, record.offset),
        )
        # Interaction (learned, user marked dirty) | Rejection
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)
