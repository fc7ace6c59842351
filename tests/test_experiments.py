"""Arm assignment, holdout lists and per-arm metrics (pure), and the pipeline using them."""

from __future__ import annotations

import orjson
import pytest

from stream.contracts import encode_recommendation_list, format_time, validate_document
from stream.engine import Engine, EngineConfig
from stream.experiments import (
    HOLDOUT,
    PERSONALISED,
    Experiment,
    ExperimentMetrics,
)
from stream.models import EventType, Interaction, RecommendationList, Source
from stream.pipeline import Pipeline

NOW = 1_790_000_000.0


def test_assignment_is_stable_salted_and_close_to_the_configured_split():
    experiment = Experiment("exp-a", holdout_share=0.1)
    users = [f"user-{n}" for n in range(20_000)]
    arms = [experiment.arm(user) for user in users]
    assert arms == [experiment.arm(user) for user in users]
    share = arms.count(HOLDOUT) / len(users)
    assert 0.09 < share < 0.11, share
    other = [Experiment("exp-b", holdout_share=0.1).arm(user) for user in users]
    assert other != arms, "another experiment id reshuffles users"
    assert set(Experiment("x", 1.0).arm(u) for u in users[:100]) == {HOLDOUT}
    with pytest.raises(ValueError):
        Experiment("x", 1.5)


def _event(n: int, user: str, item: str, kind=EventType.PLAY, ms=200_000, source=None):
    return Interaction(
        f"e{n}", user, item, kind, NOW - 100 + n, ms_played=ms, duration_ms=200_000, source=source
    )


def test_metrics_attribute_by_list_id_and_compute_rates():
    metrics = ExperimentMetrics(list_memory=2)
    metrics.on_list(RecommendationList("u1", "L1", NOW, (), arm=PERSONALISED))
    metrics.on_list(RecommendationList("u2", "L2", NOW, (), arm=HOLDOUT))
    src1, src2 = Source("L1", "top-picks", 0), Source("L2", "trending", 1)
    assert metrics.on_event(_event(1, "u1", "a", source=src1)) == PERSONALISED
    assert metrics.on_event(_event(2, "u1", "b", ms=100_000, source=src1)) == PERSONALISED
    assert metrics.on_event(_event(3, "u1", "c", EventType.SKIP, 5_000, src1)) == PERSONALISED
    assert metrics.on_event(_event(4, "u2", "a", EventType.SKIP, 5_000, src2)) == HOLDOUT
    assert metrics.on_event(_event(5, "u2", "z")) is None  # not from a list
    assert metrics.on_event(_event(6, "u9", "z", source=Source("L?", "x", 0))) is None
    arms = metrics.as_dict()["arms"]
    assert arms[PERSONALISED]["play_through_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert arms[PERSONALISED]["skip_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert arms[PERSONALISED]["attributed_plays_per_user"] == 2.0
    assert arms[HOLDOUT]["skip_rate"] == 1.0
    assert arms[HOLDOUT]["plays_per_user"] == 1.0  # the unattributed play counts here
    assert metrics.as_dict()["unattributed_events"] == 1
    # list L1 falls out of memory: its user's arm is used instead
    metrics.on_list(RecommendationList("u3", "L3", NOW, (), arm=HOLDOUT))
    metrics.on_list(RecommendationList("u3", "L4", NOW, (), arm=HOLDOUT))
    assert metrics.on_event(_event(7, "u1", "q", source=src1)) == PERSONALISED
    assert metrics.as_dict()["attributed_by_user"] == 1
    assert metrics.as_dict()["arms"][HOLDOUT]["users"] == 2


def _pipeline(share: float) -> Pipeline:
    return Pipeline(
        Engine(EngineConfig(seed=0, row_size=5)),
        clock=lambda: NOW,
        experiment=Experiment("t", holdout_share=share),
    )


def _play(n: int, user: str, item: str, source: dict | None = None) -> bytes:
    doc = {
        "event_id": f"e{n}",
        "type": "play",
        "user_id": user,
        "item_id": item,
        "occurred_at": "2026-09-21T13:00:00Z",
        "ms_played": 200_000,
        "duration_ms": 200_000,
    }
    if source:
        doc["source"] = source
    return orjson.dumps(doc)


def test_holdout_users_get_a_popularity_list_without_their_own_plays():
    pipeline = _pipeline(1.0)
    _feed_now(pipeline)
    rec = pipeline.recommend("u1")
    assert (rec.arm, rec.model, rec.experiment) == (HOLDOUT, "popularity", "t")
    assert rec.user_id == "u1" and rec.list_id.startswith("u1:")
    assert rec.based_on_events == pipeline.engine.users["u1"].n_events
    own = {pipeline.engine.items.ids[row] for row in pipeline.engine.users["u1"].seen}
    assert own and not own & set(rec.item_ids())
    assert rec.item_ids(), "popular items of others are recommended"
    doc = orjson.loads(encode_recommendation_list(rec))
    assert validate_document("recommendation-list", doc) is None
    assert doc["arm"] == "holdout" and doc["experiment"] == "t"


def _feed_now(pipeline: Pipeline) -> None:
    n = 0
    for user in range(12):
        for item in range(6):
            if (user + item) % 3:
                n += 1
                doc = orjson.loads(_play(n, f"u{user}", f"i{(user + item) % 9}"))
                doc["occurred_at"] = format_time(pipeline.clock() - 60)
                pipeline.ingest_event(
                    orjson.dumps(doc), key=f"u{user}".encode(), event_type=EventType.PLAY
                )


def test_personalised_users_get_the_engine_list_and_stats_count_attributed_plays():
    pipeline = _pipeline(0.0)
    _feed_now(pipeline)
    rec = pipeline.recommend("u2")
    assert (rec.arm, rec.model) == (PERSONALISED, "engine")
    first = rec.rows[0]
    doc = orjson.loads(_play(999, "u2", first.items[0].item_id))
    doc["occurred_at"] = format_time(NOW - 1)
    doc["source"] = {"list_id": rec.list_id, "row": first.row_id, "position": 0}
    pipeline.ingest_event(orjson.dumps(doc), key=b"u2", event_type=EventType.PLAY)
    stats = orjson.loads(orjson.dumps(pipeline.stats()))
    arm = stats["experiment"]["arms"][PERSONALISED]
    assert arm["attributed_plays"] == 1 and arm["users"] == 1 and arm["lists"] == 1
    assert stats["experiment"]["holdout_share"] == 0.0
