"""ENCORE_UNKNOWN_ITEMS: events for items outside the catalog, accepted or dead-lettered."""

from __future__ import annotations

import itertools

import orjson
import pytest

from stream.contracts import encode_catalog_item, format_time
from stream.engine import Engine, EngineConfig
from stream.models import CatalogItem, EventType
from stream.pipeline import Pipeline

NOW = 1_800_000_000.0
_event_numbers = itertools.count()


def _pipeline(mode: str) -> Pipeline:
    return Pipeline(Engine(EngineConfig(seed=0)), unknown_items=mode, clock=lambda: NOW)


def _play(item: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{n}",
            "type": "play",
            "user_id": "u1",
            "item_id": item,
            "occurred_at": format_time(NOW - 60),
            "ms_played": 1000,
        }
    )


def _announce(pipeline: Pipeline, item_id: str) -> None:
    item = CatalogItem(item_id, "Title", "Artist", ("pop",), 200_000, NOW - 86_400)
    applied = pipeline.ingest_catalog(encode_catalog_item(item), key=item_id.encode())
    assert applied.item_id == item_id


def _reasons(pipeline: Pipeline, *items: str) -> list[str | None]:
    outcomes = [
        pipeline.ingest_event(_play(item, n), key=b"u1", event_type=EventType.PLAY)
        for n, item in zip(_event_numbers, items, strict=False)
    ]
    return [getattr(outcome, "reason", None) for outcome in outcomes]


def test_accept_learns_items_the_catalog_never_announced():
    pipeline = _pipeline("accept")
    pipeline.catalog_ready = True
    assert _reasons(pipeline, "nowhere") == [None]
    assert pipeline.engine.user_counts("u1")["play"] == 1


def test_reject_waits_until_the_catalog_has_been_read():
    pipeline = _pipeline("reject")
    _announce(pipeline, "t1")
    assert _reasons(pipeline, "t1", "not-read-yet") == [None, None]
    pipeline.catalog_ready = True
    assert _reasons(pipeline, "t1", "nowhere") == [None, "unknown_item"]
    assert pipeline.stats()["rejected_by_reason"] == {"unknown_item": 1}
    assert pipeline.engine.user_counts("u1")["play"] == 3


def test_reject_refuses_withdrawn_items_and_knows_items_announced_later():
    pipeline = _pipeline("reject")
    pipeline.catalog_ready = True
    _announce(pipeline, "t1")
    _announce(pipeline, "t2")
    assert pipeline.ingest_catalog(None, key=b"t1") == "t1"  # withdrawn
    outcomes = [
        pipeline.ingest_event(_play(item, n), key=b"u1", event_type=EventType.PLAY)
        for n, item in zip(_event_numbers, ["t1", "t2"], strict=False)
    ]
    assert outcomes[0].reason == "unknown_item" and outcomes[0].field == "data.item_id"
    assert outcomes[1].item_id == "t2"


def test_a_keyless_catalog_tombstone_is_a_missing_key():
    pipeline = _pipeline("reject")
    assert pipeline.ingest_catalog(None, key=None).reason == "missing_key"
    assert pipeline.stats()["rejected_by_reason"] == {"missing_key": 1}


def test_the_mode_is_checked():
    with pytest.raises(ValueError, match="unknown_items"):
        _pipeline("sometimes")
