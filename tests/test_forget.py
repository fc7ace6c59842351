"""Forgetting a user without Kafka: Pipeline.forget, ingest_deletion, no resurrection."""

from __future__ import annotations

import itertools

import orjson
import pytest

from stream.contracts import Reason, Rejection, format_time
from stream.engine import Engine, EngineConfig
from stream.models import EventType
from stream.pipeline import Pipeline

NOW = 1_800_000_000.0
DELETED_AT = NOW - 100
_numbers = itertools.count()


def _pipeline(**options) -> Pipeline:
    return Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: NOW, **options)


def _play(user: str, item: str, at: float, event_id: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id or f"e{next(_numbers)}",
            "type": "play",
            "user_id": user,
            "item_id": item,
            "occurred_at": format_time(at),
            "ms_played": 150_000,
            "duration_ms": 200_000,
        }
    )


def _ingest(pipeline: Pipeline, raw: bytes, user: str):
    return pipeline.ingest_event(raw, key=user.encode(), event_type=EventType.PLAY)


def _deletion(user: str, at: float, **extra) -> bytes:
    return orjson.dumps({"user_id": user, "requested_at": format_time(at), **extra})


@pytest.fixture
def history() -> dict[str, list[bytes]]:
    """Old plays of two users, all before the deletion time (what a replay would resend)."""
    return {
        user: [_play(user, f"i{n}", DELETED_AT - 1_000 + 10 * n) for n in range(6)]
        for user in ("gone", "kept")
    }


@pytest.fixture
def trained(history) -> Pipeline:
    pipeline = _pipeline()
    for user, raws in history.items():
        for raw in raws:
            assert not isinstance(_ingest(pipeline, raw, user), Rejection)
    return pipeline


def test_forget_removes_the_users_counts_and_factors_and_only_theirs(trained):
    engine = trained.engine
    assert engine.user_counts("gone") == {"play": 6, "skip": 0, "replay": 0}
    assert engine.factors.knows_user("gone")
    assert trained.forget("gone", at=DELETED_AT) is True
    assert engine.user_counts("gone") is None
    assert not engine.known_user("gone")
    assert not engine.factors.knows_user("gone")
    assert engine.user_counts("kept") == {"play": 6, "skip": 0, "replay": 0}
    assert engine.factors.knows_user("kept")
    assert trained.forgotten == {"gone": DELETED_AT}
    stats = trained.stats()
    assert (stats["deletions_applied"], stats["users_forgotten"]) == (1, 1)


def test_forgetting_twice_is_harmless_and_never_moves_the_deletion_earlier(trained):
    assert trained.forget("gone", at=DELETED_AT) is True
    assert trained.forget("gone", at=DELETED_AT) is False  # nothing left to remove
    assert trained.forget("gone", at=DELETED_AT - 500) is False  # a replayed older request
    assert trained.forgotten == {"gone": DELETED_AT}
    assert trained.forget("gone", at=DELETED_AT + 5) is False
    assert trained.forgotten == {"gone": DELETED_AT + 5}
    assert trained.engine.user_counts("kept")["play"] == 6
    assert trained.stats()["users_forgotten"] == 1


def test_a_user_never_seen_can_be_forgotten_too():
    pipeline = _pipeline()
    assert pipeline.forget("stranger", at=DELETED_AT) is False
    raw = _play("stranger", "i1", DELETED_AT - 1)
    assert _ingest(pipeline, raw, "stranger").reason == Reason.USER_FORGOTTEN


def test_replayed_old_events_are_refused_as_user_forgotten(trained, history):
    trained.take_dirty()
    trained.forget("gone", at=DELETED_AT)
    outcomes = [_ingest(trained, raw, "gone") for raw in history["gone"]]
    assert [o.reason for o in outcomes] == [Reason.USER_FORGOTTEN] * 6
    assert all(o.field == "data.occurred_at" for o in outcomes)
    assert "forgotten" in outcomes[0].detail
    # even under fresh event ids (a re-export), and exactly at the deletion time
    same_moment = _ingest(trained, _play("gone", "i9", DELETED_AT), "gone")
    assert same_moment.reason == Reason.USER_FORGOTTEN
    assert trained.engine.user_counts("gone") is None
    assert trained.take_dirty() == []
    assert trained.stats()["rejected_by_reason"] == {"user_forgotten": 7}
    # the other user's history is still theirs: their old ids are duplicates, not forgotten
    assert _ingest(trained, history["kept"][0], "kept").reason == Reason.DUPLICATE


def test_events_after_the_deletion_are_new_activity_and_learned(trained):
    trained.take_dirty()
    trained.forget("gone", at=DELETED_AT)
    fresh = _ingest(trained, _play("gone", "i1", DELETED_AT + 1), "gone")
    assert not isinstance(fresh, Rejection)
    assert trained.engine.user_counts("gone") == {"play": 1, "skip": 0, "replay": 0}
    assert trained.take_dirty() == ["gone"]
    assert trained.recommend("gone").based_on_events == 1
    # still remembered: the old past stays refused
    old = _ingest(trained, _play("gone", "i2", DELETED_AT - 1), "gone")
    assert old.reason == Reason.USER_FORGOTTEN


def test_a_queued_list_is_not_published_after_the_deletion(trained):
    assert trained.stats()["users_waiting_for_a_list"] == 2
    trained.forget("gone", at=DELETED_AT)
    assert trained.take_dirty() == ["kept"]  # left the publish queue
    # taken by a publish tick before the deletion, recommended after it: no list
    assert trained.recommend("gone") is None
    trained.mark_dirty("gone")  # e.g. its delivery had failed: not queued again
    assert trained.take_dirty() == []
    assert trained.recommend("kept").based_on_events == 6
    assert trained.stats()["lists_published"] == 1


def test_a_deletion_request_from_the_topic_is_applied(trained):
    request = trained.ingest_deletion(
        _deletion("gone", DELETED_AT, request_id="r1", reason="user_request"), key=b"gone"
    )
    assert (request.user_id, request.requested_at, request.request_id) == (
        "gone",
        DELETED_AT,
        "r1",
    )
    assert trained.engine.user_counts("gone") is None
    assert trained.forgotten == {"gone": DELETED_AT}


@pytest.mark.parametrize(
    ("raw", "key", "reason", "field"),
    [
        (b"{", b"gone", "invalid_json", None),
        (None, b"gone", "tombstone", None),
        (orjson.dumps({"user_id": "gone"}), b"gone", "schema_violation", "data.requested_at"),
        (_deletion("gone", DELETED_AT), b"kept", "key_mismatch", "data.user_id"),
        (_deletion("gone", DELETED_AT), None, "missing_key", "data.user_id"),
        (_deletion("gone", NOW + 3_600), b"gone", "timestamp_in_future", "data.requested_at"),
    ],
)
def test_a_bad_deletion_request_is_rejected_and_forgets_nobody(trained, raw, key, reason, field):
    outcome = trained.ingest_deletion(raw, key=key)
    assert isinstance(outcome, Rejection)
    assert (outcome.reason, outcome.field) == (reason, field)
    assert trained.forgotten == {}
    assert trained.engine.user_counts("gone")["play"] == 6
    assert trained.stats()["rejected_by_reason"] == {reason: 1}
    assert trained.stats()["deletions_applied"] == 0


def test_an_old_deletion_request_is_still_applied():
    pipeline = _pipeline()
    old = pipeline.ingest_deletion(_deletion("u1", NOW - 400 * 86_400), key=b"u1")
    assert not isinstance(old, Rejection)
    assert pipeline.stats()["deletions_applied"] == 1


def test_memory_of_forgotten_users_is_bounded_oldest_first():
    pipeline = _pipeline(forgotten_users_max=2)
    for n in range(3):
        pipeline.forget(f"u{n}", at=DELETED_AT + n)
    assert pipeline.forgotten == {"u1": DELETED_AT + 1, "u2": DELETED_AT + 2}
    assert pipeline.stats()["forgotten_evicted"] == 1
    # past the cap the oldest deletion is no longer enforced (documented)
    assert not isinstance(_ingest(pipeline, _play("u0", "i1", DELETED_AT - 1), "u0"), Rejection)
    # forgetting again refreshes a user's place: u1 is now the newest
    pipeline.forget("u1", at=DELETED_AT + 1)
    pipeline.forget("u3", at=DELETED_AT + 3)
    assert list(pipeline.forgotten) == ["u1", "u3"]


def test_deletions_older_than_the_event_age_limit_are_dropped_without_risk():
    pipeline = _pipeline(max_event_age=86_400.0)
    pipeline.forget("ancient", at=NOW - 2 * 86_400)
    pipeline.forget("recent", at=DELETED_AT)
    assert pipeline.forgotten == {"recent": DELETED_AT}
    assert pipeline.stats()["forgotten_evicted"] == 0
    # an event old enough to predate that deletion is refused anyway
    late = _ingest(pipeline, _play("ancient", "i1", NOW - 2 * 86_400 - 1), "ancient")
    assert late.reason == Reason.TIMESTAMP_TOO_OLD


def test_the_forgotten_users_survive_a_snapshot_round_trip(trained):
    trained.forget("gone", at=DELETED_AT)
    restored = _pipeline()
    restored.restore(trained.snapshot())
    assert restored.forgotten == {"gone": DELETED_AT}
    assert _ingest(restored, _play("gone", "i1", DELETED_AT - 1), "gone").reason == (
        Reason.USER_FORGOTTEN
    )


def test_the_cap_must_be_positive():
    with pytest.raises(ValueError, match="forgotten_users_max"):
        _pipeline(forgotten_users_max=0)
