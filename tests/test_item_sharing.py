"""Item updates between workers' pipelines: applied once, never twice, never lost on replay."""

from __future__ import annotations

import pickle

from stream.contracts import Reason, Rejection, encode_interaction, parse_time
from stream.engine import Engine, EngineConfig
from stream.item_sharing import apply_item_update, delivered, take_item_update
from stream.models import EventType, Interaction
from stream.pipeline import Pipeline

NOW = parse_time("2026-11-22T18:00:00Z")
TOPIC = "plays"


def _pipeline() -> Pipeline:
    return Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: NOW)


def _event(partition: int, offset: int) -> Interaction:
    return Interaction(
        f"p{partition}-e{offset}",
        f"p{partition}-u{offset % 3}",
        f"i{(offset * 5 + partition) % 11}",
        EventType.PLAY,
        NOW - 1_000 + offset,
    )


def _feed(pipeline: Pipeline, partition: int, offsets: range) -> None:
    for offset in offsets:
        event = _event(partition, offset)
        outcome = pipeline.ingest_event(
            encode_interaction(event),
            key=event.user_id.encode(),
            event_type=event.type,
            source=(TOPIC, partition, offset),
        )
        assert not isinstance(outcome, Rejection), outcome
        pipeline.advance(TOPIC, partition, offset + 1)


def _plays(pipeline: Pipeline) -> dict[str, float]:
    engine = pipeline.engine
    return {
        item: round(engine.popularity.play_count(engine.items.row(item), now=NOW), 9)
        for item in (f"i{n}" for n in range(11))
        if engine.items.row(item) is not None
    }


def test_an_update_is_applied_once_and_the_senders_own_copy_is_dropped():
    a, b = _pipeline(), _pipeline()
    _feed(a, 0, range(30))
    _feed(b, 1, range(20))
    message_a = take_item_update(a, "a")
    message_b = take_item_update(b, "b")
    assert message_a is not None and message_b is not None
    assert set(a.pending_item_updates) == {1}

    assert apply_item_update(b, message_a) is True
    assert apply_item_update(b, message_a) is False, "sent again: already in the replica"
    assert apply_item_update(a, message_a) is False, "its own update comes back"
    assert apply_item_update(a, message_b) is True
    assert _plays(a) == _plays(b), "both replicas count all 50 plays"
    assert sum(_plays(a).values()) > 0
    assert take_item_update(b, "b") is None, "what b applied is not b's to send"

    delivered(a, 1)
    assert a.pending_item_updates == {}


def test_records_whose_item_effects_arrived_are_learned_for_the_user_only():
    """A new owner replays a partition from the old owner's checkpoint: the item effects
    of records the old owner already shared must not be counted again."""
    old, new = _pipeline(), _pipeline()
    _feed(old, 0, range(10))
    checkpoint = pickle.dumps(old.export_partitions({0}))  # a checkpoint at offset 10
    _feed(old, 0, range(10, 25))
    shared = take_item_update(old, "old")  # covers offsets 0..24, then old dies
    assert apply_item_update(new, shared) is True
    plays = _plays(new)

    new.import_partitions(pickle.loads(checkpoint))
    _feed(new, 0, range(10, 25))  # re-read from the checkpoint's position

    assert _plays(new) == plays, "item effects of offsets 10..24 were already in the replica"
    assert new.engine.user_counts("p0-u0") == old.engine.user_counts("p0-u0")
    assert take_item_update(new, "new") is None
    _feed(new, 0, range(25, 28))  # new records: item effects learned and shared again
    assert sum(_plays(new).values()) > sum(plays.values())
    assert take_item_update(new, "new") is not None


def test_a_restart_sends_its_unacknowledged_updates_again_without_double_counting():
    a, b = _pipeline(), _pipeline()
    _feed(a, 0, range(12))
    take_item_update(a, "a")  # taken just before a checkpoint ...
    snapshot = a.snapshot()  # ... which keeps it as pending
    restarted = _pipeline()
    restarted.restore(snapshot)
    assert list(restarted.pending_item_updates) == [1]
    message = restarted.pending_item_updates[1]
    assert apply_item_update(b, message) is True
    assert apply_item_update(b, message) is False
    assert apply_item_update(restarted, message) is False


def test_malformed_updates_are_rejected_whole():
    pipeline = _pipeline()
    for raw, reason in [
        (b"", Reason.INVALID_JSON),
        (b"no header line", Reason.INVALID_JSON),
        (b'{"through": 5}\n', Reason.INVALID_JSON),
        (b'{"worker":"x","sequence":1,"through":[["plays",0,5]]}\n{oops', Reason.SCHEMA_VIOLATION),
    ]:
        outcome = apply_item_update(pipeline, raw)
        assert isinstance(outcome, Rejection) and outcome.reason is reason, raw
    assert pipeline.item_positions == {}
