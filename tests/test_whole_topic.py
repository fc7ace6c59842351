"""Every partition of a topic, read without a consumer group (real broker)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.whole_topic import WholeTopicReader

pytestmark = pytest.mark.broker


async def _topic_with(bootstrap: str, partitions: int, messages: int) -> str:
    name = f"whole-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(messages):
            await producer.send(name, str(n).encode(), partition=n % partitions)
        await producer.flush()
    finally:
        await producer.stop()
    return name


async def test_reads_every_partition_from_the_start_or_given_offsets(kafka_bootstrap):
    name = await _topic_with(kafka_bootstrap, partitions=3, messages=30)
    seen: list[int] = []

    def handle(records):
        seen.extend(int(r.value) for r in records)

    reader = WholeTopicReader(name, {"bootstrap_servers": kafka_bootstrap}, handle)
    task = asyncio.create_task(reader.follow())
    try:
        assert await reader.read_to_end(timeout=30)
        assert sorted(seen) == list(range(30))
        assert reader.caught_up_with_start
        assert reader.positions == {0: 10, 1: 10, 2: 10}
    finally:
        task.cancel()

    later: list[int] = []
    resumed = WholeTopicReader(
        name,
        {"bootstrap_servers": kafka_bootstrap},
        lambda records: later.extend(int(r.value) for r in records),
        start_offsets=lambda: {0: 8, 2: 10},  # partition 1: from the beginning
    )
    task = asyncio.create_task(resumed.follow())
    try:
        assert await resumed.read_to_end(timeout=30)
        assert sorted(later) == sorted([24, 27] + [n for n in range(30) if n % 3 == 1])
    finally:
        task.cancel()
