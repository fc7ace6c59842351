"""Keep the editorial rules of the compacted curation topic in every worker.

Each worker needs every rule (a rule may touch any user), so this is not a
consumer-group agent: a group-less aiokafka consumer reads all partitions of
``curation`` from the beginning and then follows them. A changed rule marks the
affected users dirty; the publishing timer republishes their lists.

An invalid rule becomes a dead letter from every worker that reads it (and again
after a restart, while it stays in the compacted log): consumers of
``dead-letters`` can tell the copies apart by topic, partition and offset.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.settings import get_settings
from stream.topics import CURATION

logger = logging.getLogger(__name__)


async def _started_consumer(name: str) -> AIOKafkaConsumer:
    """Without a group, aiokafka assigns every partition of the subscribed topic to us."""
    consumer = AIOKafkaConsumer(
        name,
        **get_settings().aiokafka_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # no committed offsets: the whole compacted log
    )
    await consumer.start()
    return consumer


@app.task
async def apply_curation_rules() -> None:
    pipeline = worker_pipeline()
    name = get_settings().topic_name(CURATION.base_name)
    logger.info("reading curation rules from every partition of %s", name)
    while True:
        try:
            consumer = await _started_consumer(name)
            try:
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                    for records in batches.values():
                        for record in records:
                            # (rule_id bytes, rule JSON bytes or None for a tombstone)
                            outcome = pipeline.ingest_curation(record.value, key=record.key)
                            # Rule (in force) | str (removed rule id) | Rejection
                            if isinstance(outcome, Rejection):
                                await send_dead_letter(record, outcome)
            finally:
                await consumer.stop()
        except asyncio.CancelledError:
            raise
        except Exception:  # the worker keeps its rules; read again from the start
            logger.exception("curation reader failed; restarting in 1 s")
            await asyncio.sleep(1.0)
