"""Hostile input on the real broker: the whole corpus, interleaved with good events.

A running worker (unknown items rejected) gets the catalog first, then the corpus
of ``hostile_corpus.py`` over the real topics with a plain aiokafka producer. It
must dead-letter each bad message exactly once with its reason, field and original
bytes, learn every good event, and stay up.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hostile_corpus import (
    CATALOG,
    CATALOG_ITEMS,
    USERS,
    Message,
    build_corpus,
    counts_by_user,
    good_event,
    originals,
)

from stream.contracts import (
    DEAD_LETTER_SCHEMA,
    decode_recommendation_list,
    encode_catalog_item,
    validate_document,
)
from stream.processes import running_worker

pytestmark = pytest.mark.broker

TOPIC_BY_KIND = {"play": "plays", "skip": "skips", "replay": "replays", CATALOG: "catalog"}


@pytest.fixture
def rejecting_worker(worker_env) -> Iterator[Any]:
    """A running worker with ENCORE_UNKNOWN_ITEMS=reject, and its process."""
    env = {**worker_env.env, "ENCORE_UNKNOWN_ITEMS": "reject"}
    with running_worker(env, worker_env.log_path) as process:
        yield dataclasses.replace(worker_env, env=env), process


def _stats(worker) -> dict:
    url = f"http://127.0.0.1:{worker.env['ENCORE_WEB_PORT']}/stats/"
    with urllib.request.urlopen(url, timeout=10) as response:
        return orjson.loads(response.read())


async def _wait_for_stats(worker, done, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = await asyncio.to_thread(_stats, worker)
        if done(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.2)


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


async def test_the_whole_corpus_gives_one_dead_letter_each_and_every_good_event_is_learned(
    rejecting_worker,
):
    worker, process = rejecting_worker
    # an empty catalog counts as read; the corpus's unknown_item needs the check on
    stats = await _wait_for_stats(worker, lambda s: s["catalog_ready"], timeout=20)
    assert stats["catalog_ready"], "the worker never took the empty catalog as read"

    now = time.time()
    # Kafka cannot carry a message without key and value (nor a compacted topic one
    # without a key): the pure test covers that kind
    corpus = [m for m in build_corpus(now) if m.key is not None or m.value is not None]
    assert len(corpus) >= 30
    addresses = [(TOPIC_BY_KIND[m.kind], _b64(m.key), _b64(m.value)) for m in corpus]
    assert len(set(addresses)) == len(corpus), "each bad message must be told apart by its bytes"
    good: list[Message] = list(originals(now))
    messages: list[Message] = list(good)
    for n, bad in enumerate(corpus):
        event = good_event(n, now=now)
        good.append(event)
        messages += [event, bad]

    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()
    try:
        for item in CATALOG_ITEMS:
            await producer.send(
                worker.topic("catalog"), encode_catalog_item(item), key=item.item_id.encode()
            )
        await producer.flush()
        stats = await _wait_for_stats(
            worker, lambda s: s["catalog_messages_applied"] == len(CATALOG_ITEMS), timeout=20
        )
        assert stats["catalog_messages_applied"] == len(CATALOG_ITEMS)
        for message in messages:
            await producer.send(
                worker.topic(TOPIC_BY_KIND[message.kind]), message.value, key=message.key
            )
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        worker.topic("dead-letters"),
        worker.topic("recommendations"),
        bootstrap_servers=worker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[dict] = []
    latest: dict[str, Any] = {}
    expected_events = {user: sum(c.values()) for user, c in counts_by_user(good).items()}

    def take(batches) -> None:
        for batch in batches.values():
            for record in batch:
                if record.topic == worker.topic("dead-letters"):
                    letters.append(orjson.loads(record.value))
                else:
                    rec = decode_recommendation_list(record.value)
                    latest[rec.user_id] = rec

    def complete() -> bool:
        return len(letters) >= len(corpus) and all(
            user in latest and latest[user].based_on_events == expected_events[user]
            for user in USERS
        )

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not complete():
            take(await consumer.getmany(timeout_ms=200))
        settle = time.monotonic() + 1.0  # a dead letter too many would arrive here
        while time.monotonic() < settle:
            take(await consumer.getmany(timeout_ms=200))
    finally:
        await consumer.stop()

    assert process.poll() is None, "the worker died"
    assert len(letters) == len(corpus), (len(letters), len(corpus))
    expected = {address: bad for address, bad in zip(addresses, corpus, strict=True)}
    seen = set()
    for letter in letters:
        assert validate_document(DEAD_LETTER_SCHEMA, letter) is None, letter
        address = (letter["topic"].removeprefix(worker.prefix), letter["key_base64"],
                   letter["value_base64"])  # fmt: skip
        assert address in expected, f"a dead letter for no bad message: {letter}"
        assert address not in seen, f"two dead letters for {expected[address].name}"
        seen.add(address)
        bad = expected[address]
        assert (bad.name, letter["reason"], letter["field"]) == (bad.name, bad.reason, bad.field)

    for user in USERS:
        assert user in latest, f"no list for {user}"
        assert latest[user].based_on_events == expected_events[user], user
    stats = await asyncio.to_thread(_stats, worker)
    assert stats["events_accepted"] == len(good)
    assert stats["rejected_by_reason"] == dict(Counter(str(bad.reason) for bad in corpus))
    assert process.poll() is None, "the worker died"
