"""Wrapped: bounded monthly counters and the summary document."""

from __future__ import annotations

import orjson
import pytest

from stream.contracts import format_time, parse_time, validate_document
from stream.engine import Engine, EngineConfig
from stream.models import CatalogItem, EventType, Interaction
from stream.pipeline import Pipeline
from stream.wrapped import ListeningHistory

NOV = parse_time("2026-11-10T12:00:00Z")
OCT = parse_time("2026-10-10T12:00:00Z")
SONG = CatalogItem("s1", "Song", "Band", ("rock", "indie"), 200_000, 0.0)
HIT = CatalogItem("s2", "Hit", "Star", ("pop",), 100_000, 0.0)


def _event(n, item, kind=EventType.PLAY, ms=200_000, at=NOV, user="u1"):
    return Interaction(f"e{n}", user, item, kind, at + n, ms_played=ms)


def test_summary_counts_minutes_plays_skips_and_tops_for_a_month_and_a_year():
    history = ListeningHistory()
    history.learn(_event(1, "s1"), SONG)
    history.learn(_event(2, "s1", EventType.REPLAY), SONG)
    history.learn(_event(3, "s2", ms=100_000), HIT)
    history.learn(_event(4, "s2", EventType.SKIP, ms=12_000), HIT)
    history.learn(_event(5, "s2", ms=100_000, at=OCT), HIT)
    nov = history.summary("u1", "2026-11")
    assert (nov["events"], nov["plays"], nov["replays"], nov["skips"]) == (4, 2, 1, 1)
    assert nov["minutes_played"] == round((400_000 + 100_000 + 12_000) / 60_000, 2)
    assert nov["skip_rate"] == 0.25
    assert nov["top_items"] == [
        {"id": "s1", "plays": 2, "minutes": 6.67},
        {"id": "s2", "plays": 1, "minutes": 1.87},
    ]
    assert [g["id"] for g in nov["top_genres"]] == ["indie", "rock", "pop"]
    year = history.summary("u1", "2026", top=1)
    assert year["events"] == 5
    assert year["top_items"] == [{"id": "s1", "plays": 2, "minutes": 6.67}]
    assert history.summary("u1", "2025")["events"] == 0
    assert history.summary("nobody", "2026")["skip_rate"] is None
    with pytest.raises(ValueError):
        history.summary("u1", "2026-13")


def test_memory_is_bounded_by_months_and_entries():
    history = ListeningHistory(max_months=2, max_entries=3)
    for n in range(10):
        history.learn(_event(n, f"i{n}"), None)
    month = history.summary("u1", "2026-11")
    assert month["events"] == 10, "totals count every event"
    assert len(month["top_items"]) == 3 and month["truncated"]
    sep = parse_time("2026-09-10T00:00:00Z")
    history.learn(_event(20, "x", at=OCT), None)
    history.learn(_event(21, "x", at=sep), None)  # older than the two months kept
    assert set(history.users["u1"]) == {"2026-10", "2026-11"}
    history.learn(_event(22, "y", at=parse_time("2026-12-01T00:00:00Z")), None)
    assert set(history.users["u1"]) == {"2026-11", "2026-12"}


def test_pipeline_wrapped_is_a_valid_document_from_learned_events():
    clock = parse_time("2026-11-22T18:00:00Z")
    pipeline = Pipeline(Engine(EngineConfig()), clock=lambda: clock)
    pipeline.ingest_catalog(
        orjson.dumps(
            {
                "item_id": "s1",
                "title": "Song",
                "artist": "Band",
                "genres": ["rock"],
                "duration_ms": 200_000,
                "release_date": "2026-01-01",
            }
        ),
        key=b"s1",
    )
    raw = orjson.dumps(
        {
            "event_id": "e1",
            "type": "play",
            "user_id": "u1",
            "item_id": "s1",
            "occurred_at": format_time(clock - 60),
            "ms_played": 180_000,
        }
    )
    pipeline.ingest_event(raw, key=b"u1", event_type=EventType.PLAY)
    answer = pipeline.answer_wrapped_request(
        b'{"user_id":"u1","period":"2026-11","request_id":"r1"}', key=b"u1"
    )
    assert validate_document("wrapped", answer) is None, answer
    assert answer["request_id"] == "r1" and answer["minutes_played"] == 3.0
    assert answer["top_artists"] == [{"id": "Band", "plays": 1, "minutes": 3.0}]
    bad = pipeline.answer_wrapped_request(b'{"user_id":"u1","period":"2026-11"}', key=b"u2")
    assert bad.reason == "key_mismatch"
    assert pipeline.stats()["wrapped"] == {"users": 1, "answered": 1}
