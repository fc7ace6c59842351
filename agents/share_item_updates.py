"""Share item updates with the other workers, and apply theirs (stream.item_sharing).

Every ``ENCORE_ITEM_UPDATES_INTERVAL_SECONDS`` the worker takes what its own
events taught the engine about items and publishes it on ``item-updates``; every
worker reads all of that topic (no consumer group), from the offsets its
checkpoint covers, and applies the other workers' updates to its item replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from agents import send_dead_letter, worker_name, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.item_sharing import apply_item_update, delivered, take_item_update
from stream.settings import get_settings
from stream.topics import ITEM_UPDATES
from stream.whole_topic import WholeTopicReader

logger = logging.getLogger(__name__)

_settings = get_settings()
_TOPIC = _settings.topic_name(ITEM_UPDATES.base_name)


async def apply_updates(records: Sequence[Any]) -> None:
    pipeline = worker_pipeline()
    for record in records:
        outcome = apply_item_update(pipeline, record.value)
        # True (applied) | False (already in this replica: ours, or sent again) | Rejection
        pipeline.item_update_offsets[record.partition] = record.offset + 1
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)


item_updates_reader = WholeTopicReader(
    _TOPIC,
    _settings.aiokafka_options(),
    apply_updates,
    start_offsets=lambda: worker_pipeline().item_update_offsets,
    max_records=100,
)


@app.task
async def read_item_updates() -> None:
    await item_updates_reader.follow()


_sending = asyncio.Lock()


async def send_pending_item_updates() -> None:
    """Publish the taken updates the broker does not have yet, oldest first, and wait for it."""
    pipeline = worker_pipeline()
    key = worker_name().encode()
    async with _sending:
        for sequence, message in sorted(pipeline.pending_item_updates.items()):
            delivery = await app.producer.send(_TOPIC, key, message, None, None, None)
            await delivery
            delivered(pipeline, sequence)
            pipeline.item_updates_sent += 1


@app.timer(_settings.item_updates_interval_seconds, name="publish_item_updates")
async def publish_item_updates() -> None:
    take_item_update(worker_pipeline(), worker_name())
    try:
        await send_pending_item_updates()
    except Exception as error:  # noqa: BLE001 - kept pending: sent on the next tick
        logger.warning("item updates not delivered (%r); sending them again", error)
