"""The batch consumer on the real broker: every event processed, offsets committed to the end."""

from __future__ import annotations

import time
import urllib.request
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.processes import running_worker

pytestmark = pytest.mark.broker

EVENTS = 3000


def _stats(port: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=10) as response:
        return orjson.loads(response.read())


async def test_all_events_learned_and_offsets_committed_after_a_clean_stop(worker_env):
    producer = AIOKafkaProducer(bootstrap_servers=worker_env.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for n in range(EVENTS):
            user = f"bc-user-{n % 97}"
            event = {
                "event_id": uuid.uuid4().hex,
                "type": "play",
                "user_id": user,
                "item_id": f"item-{n % 211}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "ms_played": 120_000,
            }
            await producer.send(worker_env.topic("plays"), orjson.dumps(event), key=user.encode())
        await producer.flush()
    finally:
        await producer.stop()

    port = worker_env.env["ENCORE_WEB_PORT"]
    with running_worker(worker_env.env, worker_env.log_path):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _stats(port)["events_accepted"] < EVENTS:
            time.sleep(0.2)
        stats = _stats(port)
    assert stats["events_accepted"] == EVENTS, "each event learned exactly once"
    assert stats["events_by_type"] == {"play": EVENTS}

    consumer = AIOKafkaConsumer(
        bootstrap_servers=worker_env.bootstrap,
        group_id=worker_env.env["ENCORE_APP_ID"],
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(worker_env.topic("plays"), p)
            for p in range(int(worker_env.env["ENCORE_PARTITIONS"]))
        ]
        ends = await consumer.end_offsets(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()
    assert sum(ends.values()) == EVENTS
    assert committed == ends, "a clean stop commits every processed offset"
