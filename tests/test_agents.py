"""The agents without Kafka: batch handlers fed records directly, the producer mocked."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from unittest.mock import AsyncMock

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError, RecordTooLargeError
from faust.exceptions import ProducerSendError
from faust.types import TP

import agents
from agents.forget_users import forget_users
from agents.learn_from_interactions import learn_from_interactions
from agents.publish_recommendations import publish_dirty_lists
from agents.track_catalog import apply_catalog
from stream.app import app
from stream.contracts import decode_recommendation_list, format_time
from stream.topics import (
    dead_letters_topic,
    deletions_topic,
    plays_topic,
    recommendations_topic,
    skips_topic,
)


@dataclass(frozen=True)
class Record:
    """The fields of an aiokafka ConsumerRecord the handlers use."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None  # Kafka message timestamp, ms


def records(
    topic, *messages: tuple[bytes | None, bytes | None], timestamp: int | None = None
) -> tuple[TP, list[Record]]:
    name = topic if isinstance(topic, str) else topic.get_topic_name()
    return TP(name, 0), [
        Record(name, 0, offset, key, value, timestamp)
        for offset, (key, value) in enumerate(messages)
    ]


@pytest.fixture
def pipeline():
    agents.worker_pipeline.cache_clear()
    yield agents.worker_pipeline()
    agents.worker_pipeline.cache_clear()


@pytest.fixture
def sent(monkeypatch):
    """Messages handed to the producer, by topic: {topic: [(key, value), ...]}."""
    by_topic: dict[str, list[tuple[bytes, bytes]]] = {}

    async def send(topic, key, value, partition, timestamp, headers):
        by_topic.setdefault(topic, []).append((key, value))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    monkeypatch.setattr(app.producer, "send", AsyncMock(side_effect=send))
    return by_topic


def _play(user="u1", item="i1", kind="play", **extra) -> bytes:
    doc = {
        "event_id": f"{user}-{item}-{kind}",
        "type": kind,
        "user_id": user,
        "item_id": item,
        "occurred_at": format_time(time.time() - 60),
        "ms_played": 150_000,
        "duration_ms": 200_000,
    }
    return orjson.dumps({**doc, **extra})


def _dead_letters(sent) -> list[dict]:
    return [orjson.loads(value) for _, value in sent.get(dead_letters_topic.get_topic_name(), [])]


async def test_a_valid_play_is_learned_and_marks_the_user_dirty(pipeline, sent):
    await learn_from_interactions(*records(plays_topic, (b"u1", _play())))
    assert pipeline.engine.user_counts("u1") == {"play": 1, "skip": 0, "replay": 0}
    assert pipeline.take_dirty() == ["u1"]
    assert sent == {}


async def test_bad_messages_become_one_dead_letter_each_and_the_rest_is_learned(pipeline, sent):
    tp, batch = records(
        plays_topic,
        (b"u1", b"not json at all"),
        (b"u1", _play(kind="skip")),  # a skip on the plays topic
        (b"u1", _play(item="i2")),
        (b"u2", _play()),  # key is not the user id
    )
    await learn_from_interactions(tp, batch)
    letters = _dead_letters(sent)
    assert [letter["reason"] for letter in letters] == [
        "invalid_json",
        "wrong_topic",
        "key_mismatch",
    ]
    assert [letter["offset"] for letter in letters] == [0, 1, 3]
    assert pipeline.engine.user_counts("u1")["play"] == 1


async def test_a_dead_letter_the_broker_never_took_is_sent_again_until_it_is(
    pipeline, sent, monkeypatch
):
    # a broker away for longer than producer_request_timeout: send() refuses, then
    # the batch expires; neither may stop the worker or lose the dead letter
    failures = [
        ProducerSendError("Error while sending: KafkaTimeoutError()"),
        KafkaTimeoutError("Batch for TopicPartition(...) made no progress"),
    ]
    fixture_send = app.producer.send.side_effect

    async def flaky_send(topic, key, value, *args):
        if failures and isinstance(failures[0], ProducerSendError):
            failure = failures.pop(0)
            failure.__cause__ = KafkaTimeoutError()
            raise failure
        if failures:
            expired = asyncio.get_running_loop().create_future()
            expired.set_exception(failures.pop(0))
            return expired
        return await fixture_send(topic, key, value, *args)

    monkeypatch.setattr(app.producer, "send", AsyncMock(side_effect=flaky_send))
    tp, batch = records(plays_topic, (b"u1", b"not json"), (b"u1", _play()))
    await learn_from_interactions(tp, batch)
    assert app.producer.send.await_count == 3
    assert [letter["reason"] for letter in _dead_letters(sent)] == ["invalid_json"]
    assert pipeline.engine.user_counts("u1")["play"] == 1


async def test_a_dead_letter_the_broker_refuses_for_good_stops_the_handler(
    pipeline, sent, monkeypatch
):
    async def too_large(*args):
        refused = asyncio.get_running_loop().create_future()
        refused.set_exception(RecordTooLargeError())
        return refused

    monkeypatch.setattr(app.producer, "send", AsyncMock(side_effect=too_large))
    with pytest.raises(RecordTooLargeError):
        await learn_from_interactions(*records(plays_topic, (b"u1", b"not json")))
    assert app.producer.send.await_count == 1, "not sent again"


async def test_the_skips_topic_expects_skips(pipeline, sent):
    await learn_from_interactions(
        *records(skips_topic, (b"u1", _play(kind="skip", ms_played=2_000)))
    )
    assert pipeline.engine.user_counts("u1") == {"play": 0, "skip": 1, "replay": 0}
    assert sent == {}


async def test_publish_sends_one_list_per_dirty_user_however_many_events(pipeline, sent):
    await learn_from_interactions(
        *records(
            plays_topic,
            (b"u1", _play(item="i1")),
            (b"u1", _play(item="i2")),
            (b"u1", _play(item="i3")),
            (b"u2", _play(user="u2")),
        )
    )
    assert await publish_dirty_lists() == 2
    lists = {
        key: decode_recommendation_list(value)
        for key, value in sent[recommendations_topic.get_topic_name()]
    }
    assert set(lists) == {b"u1", b"u2"}
    assert lists[b"u1"].based_on_events == 3
    assert lists[b"u1"].last_event_id == "u1-i3-play"
    assert await publish_dirty_lists() == 0, "nothing new, nothing published"


async def test_a_new_event_gets_a_quick_list_and_a_background_rerank_later(pipeline, sent):
    topic = recommendations_topic.get_topic_name()
    await learn_from_interactions(*records(plays_topic, (b"u1", _play(item="i1"))))
    assert await publish_dirty_lists() == 1  # the first list is ranked in full
    await learn_from_interactions(*records(plays_topic, (b"u1", _play(item="i2"))))
    await learn_from_interactions(*records(plays_topic, (b"u2", _play(user="u2"))))
    pipeline.rerank_after = 3600.0
    assert await publish_dirty_lists() == 2  # u1: quick (patched), u2: full (first list)
    stats = pipeline.stats()
    assert (stats["lists_quick"], stats["lists_reranked"], stats["users_due_a_rerank"]) == (1, 0, 1)
    quick = decode_recommendation_list(sent[topic][-2][1])
    assert (quick.user_id, quick.last_event_id, quick.based_on_events) == ("u1", "u1-i2-play", 2)
    assert await publish_dirty_lists() == 0, "a re-rank waits rerank_after"
    pipeline.rerank_after = 0.0
    await learn_from_interactions(*records(plays_topic, (b"u3", _play(user="u3"))))
    assert await publish_dirty_lists() == 2  # u3 (waiting) first, then u1's re-rank
    assert [key for key, _ in sent[topic][-2:]] == [b"u3", b"u1"]
    rerank = decode_recommendation_list(sent[topic][-1][1])
    assert rerank.last_event_id == "u1-i2-play" and rerank.list_id != quick.list_id
    assert pipeline.stats()["lists_reranked"] == 1
    assert await publish_dirty_lists() == 0, "re-ranked once, not again"


async def test_a_failed_delivery_leaves_the_user_waiting_for_the_next_tick(
    pipeline, sent, monkeypatch
):
    await learn_from_interactions(*records(plays_topic, (b"u1", _play())))

    async def failing_send(*args):
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("broker gone"))
        return failed

    monkeypatch.setattr(app.producer, "send", AsyncMock(side_effect=failing_send))
    assert await publish_dirty_lists() == 0
    assert pipeline.take_dirty() == ["u1"]
    assert pipeline.latest_list("u1") is None, "an undelivered list is not served"


async def test_a_delivered_list_is_served_and_times_the_events_it_reflects(pipeline, sent):
    produced_ms = int((time.time() - 2.0) * 1000)  # the Kafka timestamp: two seconds ago
    await learn_from_interactions(
        *records(
            plays_topic, (b"u1", _play(item="i1")), (b"u1", _play(item="i2")), timestamp=produced_ms
        )
    )
    assert await publish_dirty_lists() == 1
    [(_, published)] = sent[recommendations_topic.get_topic_name()]
    assert pipeline.latest_list("u1") == published
    freshness = pipeline.stats()["freshness_seconds"]
    assert freshness["samples"] == 2
    assert 2.0 <= freshness["p50"] < 10.0


async def test_a_list_the_producer_refuses_ends_the_tick_and_every_user_waits_for_the_next(
    pipeline, sent, monkeypatch
):
    # Faust's producer raises from send() itself when its buffer stayed full for
    # producer_request_timeout (a broker down that long); a timer that raises
    # crashes the worker.
    await learn_from_interactions(
        *records(plays_topic, *[(f"u{n}".encode(), _play(user=f"u{n}")) for n in range(5)])
    )
    accepted = []

    async def send_then_refuse(topic, key, value, *args):
        if len(accepted) == 2:
            raise ProducerSendError("Error while sending: KafkaTimeoutError()")
        accepted.append(key)
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    monkeypatch.setattr(app.producer, "send", AsyncMock(side_effect=send_then_refuse))
    assert await publish_dirty_lists() == 2
    assert app.producer.send.await_count == 3, "no send after the refusal"
    assert pipeline.take_dirty() == ["u2", "u3", "u4"]
    assert pipeline.lists_in_flight == 0


async def test_publishing_stops_at_its_budget_and_keeps_the_rest_for_later(pipeline, sent):
    await learn_from_interactions(
        *records(plays_topic, *[(f"u{n}".encode(), _play(user=f"u{n}")) for n in range(200)])
    )
    first = await publish_dirty_lists(budget_seconds=0.0)
    assert first == 0
    assert await publish_dirty_lists() == 200


async def test_catalog_items_tombstones_and_bad_items(pipeline, sent):
    item = {
        "item_id": "t-1",
        "title": "Northern Lights",
        "artist": "Aurora Fields",
        "genres": ["ambient"],
        "duration_ms": 200_000,
        "release_date": "2026-11-01",
    }
    _, catalog_records = records(
        "catalog",
        (b"t-1", orjson.dumps(item)),
        (b"t-1", orjson.dumps({**item, "duration_ms": "long"})),
        (b"t-1", None),
    )
    await apply_catalog(catalog_records)
    letters = _dead_letters(sent)
    assert [(letter["reason"], letter["field"]) for letter in letters] == [
        ("schema_violation", "data.duration_ms")
    ]
    assert pipeline.catalog_items == 1


async def test_events_outside_the_time_window_are_dead_lettered(pipeline, sent):
    now = pipeline.clock()
    await learn_from_interactions(
        *records(
            plays_topic,
            (b"u1", _play(item="future", occurred_at=format_time(now + 3_600))),
            (b"u1", _play(item="ancient", occurred_at="1999-01-01T00:00:00Z")),
            (b"u1", _play(item="fine", occurred_at=format_time(now - 60))),
        )
    )
    letters = _dead_letters(sent)
    assert [(letter["reason"], letter["field"]) for letter in letters] == [
        ("timestamp_in_future", "data.occurred_at"),
        ("timestamp_too_old", "data.occurred_at"),
    ]
    assert pipeline.engine.user_counts("u1")["play"] == 1


async def test_a_repeated_event_id_is_a_duplicate_not_a_second_play(pipeline, sent):
    await learn_from_interactions(
        *records(plays_topic, (b"u1", _play(item="i1")), (b"u1", _play(item="i1")))
    )
    assert pipeline.engine.user_counts("u1")["play"] == 1
    assert [letter["reason"] for letter in _dead_letters(sent)] == ["duplicate"]


async def test_an_event_the_engine_failed_on_is_learned_when_replayed(pipeline, sent, monkeypatch):
    real_learn = pipeline.engine.learn
    monkeypatch.setattr(pipeline.engine, "learn", lambda event: 1 / 0)
    await learn_from_interactions(*records(plays_topic, (b"u1", _play())))
    assert [letter["reason"] for letter in _dead_letters(sent)] == ["processing_error"]
    monkeypatch.setattr(pipeline.engine, "learn", real_learn)
    await learn_from_interactions(*records(plays_topic, (b"u1", _play())))
    assert pipeline.engine.user_counts("u1")["play"] == 1
    assert len(_dead_letters(sent)) == 1


def _deletion(user="u1", **extra) -> bytes:
    return orjson.dumps({"user_id": user, "requested_at": format_time(time.time()), **extra})


async def test_a_deletion_forgets_the_user_and_tombstones_their_list(pipeline, sent):
    await learn_from_interactions(
        *records(plays_topic, (b"u1", _play()), (b"u2", _play(user="u2")))
    )
    await forget_users(*records(deletions_topic, (b"u1", _deletion()), (b"u1", _deletion())))
    assert pipeline.engine.user_counts("u1") is None
    assert pipeline.engine.user_counts("u2")["play"] == 1
    # one tombstone per applied request (idempotent: the second changes nothing else)
    assert sent[recommendations_topic.get_topic_name()] == [(b"u1", None), (b"u1", None)]
    stats = pipeline.stats()
    assert (stats["deletions_applied"], stats["users_forgotten"]) == (2, 1)
    assert stats["tombstones_published"] == 2
    # the list u1 was waiting for is not published; u2's is
    sent.clear()
    assert await publish_dirty_lists() == 1
    assert [key for key, _ in sent[recommendations_topic.get_topic_name()]] == [b"u2"]
    # replaying u1's play (a new delivery of the same event) is refused
    await learn_from_interactions(*records(plays_topic, (b"u1", _play())))
    assert [letter["reason"] for letter in _dead_letters(sent)] == ["user_forgotten"]
    assert pipeline.engine.user_counts("u1") is None


async def test_a_bad_deletion_request_is_a_dead_letter_and_no_tombstone(pipeline, sent):
    await learn_from_interactions(*records(plays_topic, (b"u1", _play())))
    await forget_users(
        *records(deletions_topic, (b"u1", b'{"user_id": "u1"}'), (b"u2", _deletion()))
    )
    letters = _dead_letters(sent)
    assert [(letter["reason"], letter["field"], letter["topic"]) for letter in letters] == [
        ("schema_violation", "data.requested_at", deletions_topic.get_topic_name()),
        ("key_mismatch", "data.user_id", deletions_topic.get_topic_name()),
    ]
    assert recommendations_topic.get_topic_name() not in sent
    assert pipeline.engine.user_counts("u1")["play"] == 1


async def test_a_user_forgotten_during_a_publish_tick_gets_no_list(pipeline, sent, monkeypatch):
    await learn_from_interactions(
        *records(plays_topic, (b"u1", _play()), (b"u2", _play(user="u2")))
    )
    real_send = app.producer.send

    async def send_then_forget(topic, key, value, *rest):
        # the deletion agent runs while the tick awaits u1's send
        if key == b"u1":
            pipeline.forget("u2", at=time.time())
        return await real_send(topic, key, value, *rest)

    monkeypatch.setattr(app.producer, "send", AsyncMock(side_effect=send_then_forget))
    assert await publish_dirty_lists() == 1
    assert [key for key, _ in sent[recommendations_topic.get_topic_name()]] == [b"u1"]
    assert pipeline.stats()["lists_in_flight"] == 0
