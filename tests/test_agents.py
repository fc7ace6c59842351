"""The agents without Kafka: ``agent.test_context()`` with the outbound topics mocked."""

from __future__ import annotations

from unittest.mock import AsyncMock

import orjson
import pytest

import agents
from agents.learn_from_interactions import learn_from_plays, learn_from_skips
from agents.publish_recommendations import publish_dirty_lists
from agents.track_catalog import track_catalog
from stream.app import app as encore_app
from stream.contracts import decode_recommendation_list
from stream.topics import dead_letters_topic, recommendations_topic


@pytest.fixture
def app():
    encore_app.finalize()
    encore_app.conf.store = "memory://"
    encore_app.flow_control.resume()
    return encore_app


@pytest.fixture
def pipeline():
    agents.worker_pipeline.cache_clear()
    yield agents.worker_pipeline()
    agents.worker_pipeline.cache_clear()


@pytest.fixture
def dead_letters(monkeypatch):
    send = AsyncMock()
    monkeypatch.setattr(dead_letters_topic, "send", send)
    return send


@pytest.fixture
def published(monkeypatch):
    send = AsyncMock()
    monkeypatch.setattr(recommendations_topic, "send", send)
    return send


def _play(user="u1", item="i1", kind="play", **extra) -> bytes:
    doc = {
        "event_id": f"{user}-{item}-{kind}",
        "type": kind,
        "user_id": user,
        "item_id": item,
        "occurred_at": "2026-11-22T18:00:00Z",
        "ms_played": 150_000,
        "duration_ms": 200_000,
    }
    return orjson.dumps({**doc, **extra})


async def test_a_valid_play_is_learned_and_marks_the_user_dirty(app, pipeline, dead_letters):
    async with learn_from_plays.test_context() as agent:
        await agent.put(_play(), key=b"u1")
    assert pipeline.engine.user_counts("u1") == {"play": 1, "skip": 0, "replay": 0}
    assert pipeline.take_dirty() == ["u1"]
    dead_letters.assert_not_awaited()


async def test_a_bad_message_becomes_one_dead_letter_and_the_next_is_still_learned(
    app, pipeline, dead_letters
):
    async with learn_from_plays.test_context() as agent:
        await agent.put(b"not json at all", key=b"u1")
        await agent.put(_play(kind="skip"), key=b"u1")  # a skip on the plays topic
        await agent.put(_play(item="i2"), key=b"u1")
    assert dead_letters.await_count == 2
    reasons = [
        orjson.loads(call.kwargs["value"])["reason"] for call in dead_letters.await_args_list
    ]
    assert reasons == ["invalid_json", "type_mismatch"]
    assert pipeline.engine.user_counts("u1")["play"] == 1


async def test_skips_agent_expects_skips(app, pipeline, dead_letters):
    async with learn_from_skips.test_context() as agent:
        await agent.put(_play(kind="skip", ms_played=2_000), key=b"u1")
    assert pipeline.engine.user_counts("u1") == {"play": 0, "skip": 1, "replay": 0}
    dead_letters.assert_not_awaited()


async def test_publish_sends_one_list_per_dirty_user_however_many_events(
    app, pipeline, dead_letters, published
):
    async with learn_from_plays.test_context() as agent:
        for item in ("i1", "i2", "i3"):
            await agent.put(_play(item=item), key=b"u1")
        await agent.put(_play(user="u2"), key=b"u2")
    assert await publish_dirty_lists() == 2
    assert published.await_count == 2
    lists = {
        call.kwargs["key"]: decode_recommendation_list(call.kwargs["value"])
        for call in published.await_args_list
    }
    assert set(lists) == {b"u1", b"u2"}
    assert lists[b"u1"].based_on_events == 3
    assert lists[b"u1"].last_event_id == "u1-i3-play"
    assert await publish_dirty_lists() == 0
    assert published.await_count == 2, "nothing new, nothing published"


async def test_catalog_items_and_tombstones(app, pipeline, dead_letters):
    item = {
        "item_id": "t-1",
        "title": "Northern Lights",
        "artist": "Aurora Fields",
        "genres": ["ambient"],
        "duration_ms": 200_000,
        "release_date": "2026-11-01",
    }
    async with track_catalog.test_context() as agent:
        await agent.put(orjson.dumps(item), key=b"t-1")
        await agent.put(orjson.dumps({**item, "duration_ms": "long"}), key=b"t-1")
        await agent.put(None, key=b"t-1")
    assert dead_letters.await_count == 1
    letter = orjson.loads(dead_letters.await_args.kwargs["value"])
    assert (letter["reason"], letter["field"]) == ("schema_violation", "data.duration_ms")
