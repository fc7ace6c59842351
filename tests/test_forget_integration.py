"""Forgetting a user on the real broker: through the deletions topic and through the HTTP endpoint.

Two users get lists; one is forgotten. A tombstone for them must follow their last
list on ``recommendations``, the worker must no longer know them (the other user
untouched), and replaying their old events must give ``user_forgotten`` dead
letters and no new list. An event after the deletion is new activity.
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.contracts import (
    DEAD_LETTER_SCHEMA,
    DELETION_REQUEST_SCHEMA,
    decode_recommendation_list,
    validate_document,
)

pytestmark = pytest.mark.broker

GONE, KEPT = "forget-me", "keep-me"


def _event(user: str, item: str, kind: str = "play") -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "item_id": item,
        "occurred_at": datetime.now(UTC).isoformat(),
        "ms_played": 150_000 if kind == "play" else 3_000,
        "duration_ms": 200_000,
    }


def _topic_of(event: dict) -> str:
    return {"play": "plays", "skip": "skips", "replay": "replays"}[event["type"]]


@dataclass(frozen=True)
class Seen:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes | None


class Reader:
    """Everything that reaches recommendations and dead-letters, in arrival order."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.records: list[Seen] = []
        self.consumer = AIOKafkaConsumer(
            worker.topic("recommendations"),
            worker.topic("dead-letters"),
            bootstrap_servers=worker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            for batch in (await self.consumer.getmany(timeout_ms=200)).values():
                for r in batch:
                    topic = r.topic.removeprefix(self.worker.prefix)
                    self.records.append(Seen(topic, r.partition, r.offset, r.key.decode(), r.value))
        return done()

    def on(self, topic: str, user: str) -> list[Seen]:
        return [r for r in self.records if r.topic == topic and r.key == user]

    def lists(self, user: str) -> list[Seen]:
        return [r for r in self.on("recommendations", user) if r.value is not None]

    def tombstones(self, user: str) -> list[Seen]:
        return [r for r in self.on("recommendations", user) if r.value is None]

    def based_on(self, user: str) -> int | None:
        lists = self.lists(user)
        return decode_recommendation_list(lists[-1].value).based_on_events if lists else None

    def letters(self) -> list[dict]:
        return [orjson.loads(r.value) for r in self.records if r.topic == "dead-letters"]


async def _produce(worker: Any, messages: list[tuple[str, str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send(worker.topic(topic), value, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _http(worker: Any, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{worker.env['ENCORE_WEB_PORT']}{path}"
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


async def _request_deletion(worker: Any, via: str) -> None:
    if via == "topic":
        request = {
            "user_id": GONE,
            "requested_at": datetime.now(UTC).isoformat(),
            "request_id": "del-1",
            "reason": "user_request",
        }
        assert validate_document(DELETION_REQUEST_SCHEMA, request) is None
        await _produce(worker, [("deletions", GONE, orjson.dumps(request))])
        return
    status, answer = await asyncio.to_thread(
        _http, worker, "DELETE", f"/users/{GONE}", b'{"everything": true}'
    )
    assert (status, answer["error"]) == (400, "bad_request")
    status, answer = await asyncio.to_thread(
        _http, worker, "DELETE", f"/users/{GONE}", b'{"reason": "user_request"}'
    )
    assert status == 202, answer
    assert (answer["status"], answer["user_id"], answer["reason"]) == (
        "accepted",
        GONE,
        "user_request",
    )
    assert answer["topic"] == worker.topic("deletions")
    assert answer["request_id"] and answer["offset"] >= 0
    assert abs(datetime.fromisoformat(answer["requested_at"]).timestamp() - time.time()) < 30


@pytest.mark.parametrize("via", ["topic", "http"])
async def test_a_forgotten_user_is_gone_and_old_events_cannot_bring_them_back(worker, via):
    history = {
        user: [_event(user, f"{user}-i{n}") for n in range(3)] + [_event(user, "x", "skip")]
        for user in (GONE, KEPT)
    }
    await _produce(
        worker,
        [(_topic_of(e), e["user_id"], orjson.dumps(e)) for e in history[GONE] + history[KEPT]],
    )
    reader = Reader(worker)
    await reader.consumer.start()
    try:
        assert await reader.until(
            lambda: reader.based_on(GONE) == 4 and reader.based_on(KEPT) == 4, timeout=20
        ), f"lists based on {reader.based_on(GONE)} and {reader.based_on(KEPT)} events"
        status, known = await asyncio.to_thread(_http, worker, "GET", f"/users/{GONE}")
        assert (status, known["known"], known["forgotten_at"]) == (200, True, None)
        assert known["events"] == {"play": 3, "skip": 1, "replay": 0}

        await _request_deletion(worker, via)
        assert await reader.until(lambda: reader.tombstones(GONE), timeout=20), "no tombstone"
        (tombstone,) = reader.tombstones(GONE)
        last_list = reader.lists(GONE)[-1]
        assert tombstone.partition == last_list.partition
        assert tombstone.offset > last_list.offset, "the tombstone must follow the last list"

        status, gone = await asyncio.to_thread(_http, worker, "GET", f"/users/{GONE}")
        assert (status, gone["known"], gone["events"]) == (404, False, None)
        assert gone["forgotten_at"] is not None
        status, kept = await asyncio.to_thread(_http, worker, "GET", f"/users/{KEPT}")
        assert (status, kept["events"]) == (200, {"play": 3, "skip": 1, "replay": 0})
        _, stats = await asyncio.to_thread(_http, worker, "GET", "/stats/")
        assert (stats["deletions_applied"], stats["users_forgotten"]) == (1, 1)
        assert stats["tombstones_published"] == 1
        assert stats["events_accepted"] == 8

        # a replay of the forgotten user's past (the very same messages)
        replayed = {orjson.dumps(e) for e in history[GONE]}
        await _produce(worker, [(_topic_of(e), GONE, orjson.dumps(e)) for e in history[GONE]])
        assert await reader.until(lambda: len(reader.letters()) >= 4, timeout=20)
        await reader.until(lambda: False, timeout=1.0)  # a list or letter too many lands here
        letters = reader.letters()
        assert [letter["reason"] for letter in letters] == ["user_forgotten"] * 4
        for letter in letters:
            assert validate_document(DEAD_LETTER_SCHEMA, letter) is None
            assert base64.b64decode(letter["value_base64"]) in replayed
            assert letter["field"] == "data.occurred_at"
        assert reader.on("recommendations", GONE)[-1] == tombstone, "a list after the tombstone"
        assert reader.tombstones(KEPT) == [] and reader.based_on(KEPT) == 4
        status, gone = await asyncio.to_thread(_http, worker, "GET", f"/users/{GONE}")
        assert (status, gone["known"]) == (404, False)
        _, stats = await asyncio.to_thread(_http, worker, "GET", "/stats/")
        assert stats["rejected_by_reason"] == {"user_forgotten": 4}
        assert stats["events_accepted"] == 8

        # new activity after the deletion is learned from scratch
        fresh = _event(GONE, "after")
        await _produce(worker, [("plays", GONE, orjson.dumps(fresh))])
        assert await reader.until(lambda: reader.lists(GONE)[-1].offset > tombstone.offset, 20)
        assert reader.based_on(GONE) == 1
        status, back = await asyncio.to_thread(_http, worker, "GET", f"/users/{GONE}")
        assert (status, back["events"]) == (200, {"play": 1, "skip": 0, "replay": 0})
    finally:
        await reader.consumer.stop()
