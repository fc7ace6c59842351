"""The HTTP API's logic without Faust or Kafka: engine queries, JSON documents, errors, metrics."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.contracts import (
    encode_interaction,
    encode_recommendation_list,
    format_time,
    validate_document,
)
from stream.engine import Engine, EngineConfig
from stream.experiments import HOLDOUT, PERSONALISED, Experiment
from stream.metrics import Freshness, PartitionProgress, WorkerMetrics, lag_summary
from stream.models import CatalogItem, EventType, Interaction, RecommendationList, Source
from stream.pipeline import Pipeline
from stream.serving import (
    ApiError,
    check_owner,
    current_list,
    parse_k,
    parse_period,
    parse_top,
    partition_of,
    profile_document,
    similar_document,
    wrapped_document,
)
from stream.wrapped import month_of

NOW = 1_795_000_000.0


def item(item_id: str, artist: str, genre: str) -> CatalogItem:
    return CatalogItem(item_id, f"Title {item_id}", artist, (genre,), 200_000, NOW - 86_400)


def event(n: int, user: str, item_id: str, kind: EventType = EventType.PLAY) -> Interaction:
    ms = 3_000 if kind is EventType.SKIP else 190_000
    return Interaction(f"e{n}", user, item_id, kind, NOW - 100 + n, ms_played=ms)


@pytest.fixture
def pipeline() -> Pipeline:
    pipeline = Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: NOW, served_lists=2)
    for row in [
        item("a", "Ada", "jazz"),
        item("b", "Ada", "jazz"),
        item("c", "Cy", "rock"),
        item("d", "Cy", "rock"),
    ]:
        pipeline.engine.upsert_item(row)
    plays = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u1", "c")]
    for n, (user, item_id) in enumerate(plays):
        raw = encode_interaction(event(n, user, item_id))
        pipeline.ingest_event(raw, key=user.encode(), event_type=EventType.PLAY)
    skip = encode_interaction(event(10, "u1", "d", EventType.SKIP))
    pipeline.ingest_event(skip, key=b"u1", event_type=EventType.SKIP)
    return pipeline


def test_engine_similar_items_come_from_cooccurrence(pipeline: Pipeline) -> None:
    engine = pipeline.engine
    similar = engine.similar_items("a", 10, now=NOW)
    assert similar is not None
    assert [item_id for item_id, _ in similar][:1] == ["b"], "a and b were played together twice"
    assert "a" not in [item_id for item_id, _ in similar]
    assert engine.similar_items("nope", 5, now=NOW) is None
    assert len(engine.similar_items("a", 1, now=NOW) or []) == 1
    engine.remove_item("b")
    assert "b" not in [i for i, _ in engine.similar_items("a", 10, now=NOW) or []]
    engine.remove_item("a")
    assert engine.similar_items("a", 5, now=NOW) is None, "a withdrawn item is unknown"


def test_engine_recent_events_newest_first_with_signs(pipeline: Pipeline) -> None:
    recent = pipeline.engine.recent_events("u1", 3)
    assert recent is not None
    assert [item_id for item_id, _, _ in recent] == ["d", "c", "b"]
    assert recent[0][1] < 0 < recent[1][1], "the skip is negative, the play positive"
    assert pipeline.engine.recent_events("nobody", 3) is None


def test_profile_document_counts_and_taste(pipeline: Pipeline) -> None:
    doc = profile_document(pipeline, "u1", k=5)
    assert doc["counts"] == {"plays": 3, "skips": 1, "replays": 0, "total": 4}
    assert doc["top_genres"][0]["genre"] == "jazz"
    assert doc["top_artists"][0]["artist"] == "Ada"
    assert doc["recent_events"][0] == {
        "item_id": "d",
        "title": "Title d",
        "signal": pytest.approx(doc["recent_events"][0]["signal"]),
        "kind": "negative",
        "at": format_time(NOW - 90),
    }
    with pytest.raises(ApiError) as raised:
        profile_document(pipeline, "nobody", k=5)
    assert raised.value.status == 404
    assert raised.value.to_json()["error"] == "unknown_user"


def test_similar_document_and_unknown_item(pipeline: Pipeline) -> None:
    doc = similar_document(pipeline, "a", k=2)
    assert doc["item_id"] == "a" and doc["k"] == 2
    assert doc["similar"][0]["item_id"] == "b" and doc["similar"][0]["title"] == "Title b"
    with pytest.raises(ApiError) as raised:
        similar_document(pipeline, "zzz", k=2)
    assert (raised.value.status, raised.value.code) == (404, "unknown_item")


@pytest.mark.parametrize("raw", ["-1", "0", "101", "ten", ""])
def test_bad_k_is_a_400_naming_the_parameter(raw: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_k({"k": raw})
    assert raised.value.status == 400
    assert raised.value.to_json()["parameter"] == "k"
    assert parse_k({}) == 10 and parse_k({"k": "100"}) == 100


def test_current_list_is_the_published_one_then_computed_once_evicted(pipeline: Pipeline) -> None:
    for user in ["u1", "u2"]:
        pipeline.delivered(user, encode_recommendation_list(pipeline.recommend(user)), at=NOW)
    payload, source = current_list(pipeline, "u1")
    assert source == "published"
    assert validate_document("recommendation-list", orjson.loads(payload)) is None
    pipeline.delivered("u3", b"{}", at=NOW)  # served_lists=2: u1's list is dropped
    payload, source = current_list(pipeline, "u1")
    assert source == "computed"
    assert orjson.loads(payload)["user_id"] == "u1"
    with pytest.raises(ApiError):
        current_list(pipeline, "nobody")
    assert pipeline.stats()["recently_published_users"] == ["u3", "u2", "u1"]


def test_kept_lists_cost_their_size_not_orjsons_buffer() -> None:
    import tracemalloc

    pipeline = Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: NOW, served_lists=300)
    document = {"user_id": "u", "rows": [{"items": ["x" * 60] * 60}]}  # ~4 KB of JSON
    size = len(orjson.dumps(document))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(300):
            pipeline.delivered(f"u{n}", orjson.dumps(document), at=NOW)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert pipeline.latest_list("u7") == orjson.dumps(document)
    # orjson's own bytes would hold 8 KiB each (its buffer); the dict itself is small.
    assert kept / 300 < 1.25 * size, (kept / 300, size)


def test_owner_check_uses_the_producers_partitioner() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    for user in ["u-1", "u-00042", "someone else"]:
        expected = DefaultPartitioner()(user.encode(), list(range(6)), [])
        assert partition_of(user, 6) == expected
    topics = {"plays": 6, "skips": 6}
    mine = partition_of("u-1", 6)
    assert check_owner("u-1", event_topics=topics, assigned={("plays", mine), ("skips", mine)})
    with pytest.raises(ApiError) as raised:
        check_owner("u-1", event_topics=topics, assigned={("plays", mine)})
    assert raised.value.status == 421 and raised.value.details["topics"] == ["skips"]
    with pytest.raises(ApiError) as raised:
        check_owner("u-1", event_topics=topics, assigned=set())
    assert raised.value.status == 503


def test_freshness_samples_each_event_once_from_its_kafka_timestamp() -> None:
    freshness = Freshness(clock=lambda: 110.0, window_seconds=5.0, max_pending_per_user=2)
    freshness.accepted("u1", 100.0)
    freshness.accepted("u1", 100.5)
    freshness.accepted("u1", 101.0)  # over the cap
    freshness.accepted("u2", None)  # no timestamp: not sampled
    assert freshness.delivered("u1", at=101.0) == 2
    assert freshness.delivered("u2", at=101.0) == 0
    assert freshness.dropped == 1
    assert freshness.quantiles()["samples"] == 0, "delivered 9 s ago: outside the 5 s window"
    freshness.accepted("u1", 109.0)
    freshness.delivered("u1", at=109.25)
    figures = freshness.quantiles()
    assert figures["p50"] == 0.25 and figures["samples"] == 1


def test_freshness_quantiles_cover_the_newest_samples_only() -> None:
    freshness = Freshness(clock=lambda: 200.0, window_seconds=60.0, max_samples=4)
    for n, seconds in enumerate((9.0, 8.0, 1.0, 2.0, 3.0)):
        freshness.accepted(f"u{n}", 150.0 - seconds)
        freshness.delivered(f"u{n}", at=150.0)
    figures = freshness.quantiles((0.0, 1.0))
    assert figures == {"p0": 1.0, "p100": 8.0, "samples": 4, "window_seconds": 60.0}
    for n in range(6):  # one user's backlog longer than the ring: its newest samples stay
        freshness.accepted("busy", 195.0 + n * 0.1)
    freshness.delivered("busy", at=196.0)
    figures = freshness.quantiles((0.0, 1.0))
    assert figures["samples"] == 4 and figures["p0"] == 0.5 and figures["p100"] == 0.8


def test_lag_from_highwater_committed_and_processed() -> None:
    rows = [
        PartitionProgress("plays", 1, highwater=50, committed=None, processed=None),
        PartitionProgress("plays", 0, highwater=100, committed=90, processed=98),
        PartitionProgress("skips", 0, highwater=None, committed=3, processed=3),
    ]
    summary = lag_summary(rows)
    assert summary["total"] == 50 + 10
    assert summary["processing_total"] == 50 + 2
    assert [(p["topic"], p["partition"]) for p in summary["partitions"]] == [
        ("plays", 0),
        ("plays", 1),
        ("skips", 0),
    ]


def test_metrics_text_parses_and_matches_the_pipeline(pipeline: Pipeline) -> None:
    pipeline.ingest_event(b"{oops", key=b"u1", event_type=EventType.PLAY)
    pipeline.delivered("u1", b"{}", at=NOW)
    progress = [PartitionProgress("plays", 0, highwater=10, committed=4, processed=7)]
    text = WorkerMetrics(pipeline, lambda: progress).render().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("encore_events_total", (("type", "play"),))] == 6
    assert samples[("encore_events_total", (("type", "skip"),))] == 1
    assert samples[("encore_dead_letters_total", (("reason", "invalid_json"),))] == 1
    assert samples[("encore_lists_published_total", ())] == 1
    assert samples[("encore_consumer_lag", (("partition", "0"), ("topic", "plays")))] == 6
    assert (
        samples[("encore_consumer_processing_lag", (("partition", "0"), ("topic", "plays")))] == 3
    )
    # no produce timestamps were given to ingest_event: nothing was sampled
    assert samples[("encore_freshness_seconds_count", ())] == 0


def test_wrapped_document_is_the_topics_document_and_unknown_user_is_404(
    pipeline: Pipeline,
) -> None:
    month = month_of(NOW)
    doc = wrapped_document(pipeline, "u1", parse_period({"period": month}), parse_top({"top": "2"}))
    assert validate_document("wrapped", doc) is None, doc
    assert doc == pipeline.wrapped("u1", month, top=2)
    # u1: plays of a, b, c (190 000 ms each) and a skip of d after 3 000 ms
    assert (doc["events"], doc["plays"], doc["skips"], doc["skip_rate"]) == (4, 3, 1, 0.25)
    assert doc["minutes_played"] == 9.55 and len(doc["top_items"]) == 2
    with pytest.raises(ApiError) as raised:
        wrapped_document(pipeline, "nobody", month, 5)
    assert (raised.value.status, raised.value.code) == (404, "unknown_user")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({}, "period"),
        ({"period": "2026-13"}, "period"),
        ({"period": "26-11"}, "period"),
        ({"period": "2026-11", "top": "0"}, "top"),
        ({"period": "2026-11", "top": "51"}, "top"),
        ({"period": "2026", "top": "x"}, "top"),
    ],
)
def test_bad_wrapped_parameters_are_a_400_naming_them(query: dict, parameter: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_period(query)
        parse_top(query)
    assert (raised.value.status, raised.value.code) == (400, "bad_parameter")
    assert raised.value.to_json()["parameter"] == parameter


def test_metrics_per_arm_equal_the_stats_quality_by_arm() -> None:
    pipeline = Pipeline(
        Engine(EngineConfig(seed=0)), clock=lambda: NOW, experiment=Experiment("x", 0.5)
    )
    lists = {
        PERSONALISED: RecommendationList("p1", "Lp", NOW, (), arm=PERSONALISED),
        HOLDOUT: RecommendationList("h1", "Lh", NOW, (), arm=HOLDOUT),
    }
    for rec in lists.values():
        pipeline.metrics.on_list(rec)
    events = [  # (user, list, type, ms_played of 200 000)
        ("p1", "Lp", EventType.PLAY, 200_000),
        ("p1", "Lp", EventType.PLAY, 50_000),  # not played through
        ("h1", "Lh", EventType.SKIP, 5_000),
        ("h1", "Lh", EventType.PLAY, 190_000),
        ("h1", "Lh", EventType.SKIP, 3_000),
    ]
    for n, (user, list_id, kind, ms) in enumerate(events):
        pipeline.metrics.on_event(
            Interaction(
                f"q{n}", user, "a", kind, NOW, ms_played=ms, duration_ms=200_000,
                source=Source(list_id, "top-picks", n),
            )
        )  # fmt: skip
    quality = pipeline.stats()["quality_by_arm"]
    assert quality == {
        HOLDOUT: {
            "users": 1,
            "attributed_events": 3,
            "play_through_rate": round(1 / 3, 6),
            "skip_rate": round(2 / 3, 6),
            "plays_per_user": 1.0,
        },
        PERSONALISED: {
            "users": 1,
            "attributed_events": 2,
            "play_through_rate": 0.5,
            "skip_rate": 0.0,
            "plays_per_user": 2.0,
        },
    }
    text = WorkerMetrics(pipeline).render().decode()
    samples = {
        (sample.name, sample.labels.get("arm")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for arm, figures in quality.items():
        assert samples[("encore_arm_users", arm)] == figures["users"]
        assert samples[("encore_arm_attributed_events_total", arm)] == figures["attributed_events"]
        assert samples[("encore_arm_play_through_rate", arm)] == figures["play_through_rate"]
        assert samples[("encore_arm_skip_rate", arm)] == figures["skip_rate"]
        assert samples[("encore_arm_plays_per_user", arm)] == figures["plays_per_user"]
    # a rate with nothing to divide by has no sample
    pipeline.metrics.on_list(RecommendationList("n1", "Ln", NOW, (), arm="third"))
    text = WorkerMetrics(pipeline).render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["arm"] for s in families["encore_arm_skip_rate"].samples} == {
        HOLDOUT,
        PERSONALISED,
    }
    assert {s.labels["arm"] for s in families["encore_arm_users"].samples} == {
        HOLDOUT,
        PERSONALISED,
        "third",
    }
