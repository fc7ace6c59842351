"""End to end on the real broker: a plain aiokafka producer in, recommendation lists out."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.contracts import decode_recommendation_list, validate_document

pytestmark = pytest.mark.broker

USERS = [f"it-user-{n}" for n in range(5)]
TOPIC_BY_TYPE = {"play": "plays", "skip": "skips", "replay": "replays"}


def _event(user: str, item: str, kind: str, ms_played: int = 150_000) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "item_id": item,
        "occurred_at": datetime.now(UTC).isoformat(),
        "ms_played": ms_played,
        "duration_ms": 200_000,
        "device": "mobile",
    }


async def _read_until(consumer: AIOKafkaConsumer, done, deadline: float) -> list:
    records = []
    while time.monotonic() < deadline and not done(records):
        batches = await consumer.getmany(timeout_ms=200)
        for batch in batches.values():
            records.extend(batch)
    return records


def _stats(worker) -> dict:
    port = worker.env["ENCORE_WEB_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/", timeout=10) as response:
        return orjson.loads(response.read())


async def _wait_for_accepted(worker, events: int, deadline: float) -> None:
    """Until the worker has accepted ``events`` events (its /stats/ say so)."""
    while (accepted := _stats(worker)["events_accepted"]) < events:
        assert time.monotonic() < deadline, f"{accepted} of {events} events accepted in time"
        await asyncio.sleep(0.1)


async def test_plain_producer_events_become_lists_and_bad_ones_dead_letters(worker):
    valid = []
    for index, user in enumerate(USERS):
        valid.append(_event(user, f"item-{index}", "play"))
        valid.append(_event(user, f"item-{index + 1}", "skip", ms_played=3_000))
        valid.append(_event(user, f"item-{index + 2}", "replay"))
    warm_up = [_event(f"listener-{n}", f"hit-{n % 4}", "play") for n in range(8)]
    malformed = b'{"event_id": "oops", "type": "play",'  # cut-off JSON
    schema_invalid = orjson.dumps({**_event(USERS[0], "item-9", "play"), "ms_played": -1})

    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()

    async def send(events: list[dict]) -> None:
        for event in events:
            await producer.send(
                worker.topic(TOPIC_BY_TYPE[event["type"]]),
                orjson.dumps(event),
                key=event["user_id"].encode(),
            )

    try:
        # Listeners outside USERS make items known first, and the test waits until the
        # worker has learned them: a user whose own items were all the worker knew would
        # rightly get an empty list (nothing it has not met), whichever topic came first.
        await send(warm_up)
        await producer.flush()
        await _wait_for_accepted(worker, len(warm_up), deadline=time.monotonic() + 10.0)
        # interleave the bad messages with good ones on the same partitions
        await send(valid[:4])
        await producer.send(worker.topic("plays"), malformed, key=USERS[0].encode())
        await producer.send(worker.topic("plays"), schema_invalid, key=USERS[0].encode())
        await send(valid[4:])
        await producer.flush()
    finally:
        await producer.stop()
    sent_at = time.monotonic()

    expected_counts = {user: sum(e["user_id"] == user for e in valid) for user in USERS}
    consumer = AIOKafkaConsumer(
        worker.topic("recommendations"),
        worker.topic("dead-letters"),
        bootstrap_servers=worker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    latest: dict[str, object] = {}
    dead_letters: list[dict] = []

    def done(records) -> bool:
        for record in records[len(done.seen) :]:
            if record.topic.endswith("dead-letters"):
                dead_letters.append(orjson.loads(record.value))
            else:
                assert validate_document("recommendation-list", orjson.loads(record.value)) is None
                rec = decode_recommendation_list(record.value)
                if rec.user_id in expected_counts:  # not a listener's
                    latest[rec.user_id] = rec
        done.seen = list(records)
        complete = all(
            user in latest and latest[user].based_on_events == expected_counts[user]
            for user in USERS
        )
        return complete and len(dead_letters) >= 2

    done.seen = []
    try:
        await _read_until(consumer, done, deadline=sent_at + 5.0)
        # a little longer, to catch a dead letter too many
        await asyncio.sleep(0.5)
        done(done.seen + await _read_until(consumer, lambda r: False, time.monotonic() + 0.5))
    finally:
        await consumer.stop()

    assert set(latest) == set(USERS), f"lists within 5 s for {sorted(latest)} only"
    for user in USERS:
        rec = latest[user]
        assert rec.based_on_events == expected_counts[user]
        # plays, skips and replays travel on different topics: any of them may land last
        assert rec.last_event_id in {e["event_id"] for e in valid if e["user_id"] == user}
        assert rec.rows, "a list has at least one row"
        assert all(item.reason for row in rec.rows for item in row.items)
    reasons = sorted(letter["reason"] for letter in dead_letters)
    assert reasons == ["invalid_json", "schema_violation"]
    by_reason = {letter["reason"]: letter for letter in dead_letters}
    assert base64.b64decode(by_reason["invalid_json"]["value_base64"]) == malformed
    assert base64.b64decode(by_reason["schema_violation"]["value_base64"]) == schema_invalid
    assert by_reason["schema_violation"]["field"] == "data.ms_played"
    for letter in dead_letters:
        assert validate_document("dead-letter", letter) is None

    stats = _stats(worker)
    assert stats["events_accepted"] == len(warm_up) + len(valid)
    assert stats["rejected_by_reason"] == {"invalid_json": 1, "schema_violation": 1}
    assert stats["lists_published"] >= len(USERS)


def test_tail_shows_a_users_list_in_readable_form(worker):
    # others' plays first, so there is something to recommend to the user
    events = [_event(f"other-{n}", f"hit-{n % 3}", "play") for n in range(9)]
    events.append(_event(USERS[0], "item-1", "play"))

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap)
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(
                    worker.topic("plays"), orjson.dumps(event), key=event["user_id"].encode()
                )
        finally:
            await producer.stop()

    asyncio.run(produce())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream",
            "tail",
            "recommendations",
            "--user",
            USERS[0],
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **worker.env},
    )
    assert result.returncode == 0, result.stderr
    assert USERS[0] in result.stdout
    assert "hit-" in result.stdout, "the others' hits are recommended"
