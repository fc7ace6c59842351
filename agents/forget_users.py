"""Apply deletion requests: forget the user, then tombstone their list on ``recommendations``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import TP

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.topics import deletions_topic, recommendations_topic


async def send_tombstone(user_id: str) -> None:
    """A null value for ``user_id`` on the compacted ``recommendations`` topic.

    Downstream consumers drop the user's list, and compaction removes it from the
    log. Waits until the broker has it: the request's offset is committed after.
    """
    delivery = await app.producer.send(
        recommendations_topic.get_topic_name(), user_id.encode(), None, None, None, None
    )
    await delivery
    worker_pipeline().tombstones_published += 1


@app.batch_agent(deletions_topic)
async def forget_users(tp: TP, records: Sequence[Any]) -> None:
    pipeline = worker_pipeline()
    for record in records:
        # (key bytes = user_id, raw deletion request bytes)
        outcome = pipeline.ingest_deletion(record.value, key=record.key, partition=record.partition)
        # DeletionRequest (user forgotten, their list out of the queue) | Rejection
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)
            continue
        # a tombstone even for a user this worker never knew: a list may predate it
        await send_tombstone(outcome.user_id)
