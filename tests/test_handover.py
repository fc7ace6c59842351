"""User state moves with partitions: export/import between pipelines, and adoption
from the checkpoints in a shared directory (stream.checkpoint)."""

from __future__ import annotations

from stream.checkpoint import Checkpointer, read_header
from stream.contracts import Reason, encode_interaction, parse_time
from stream.engine import Engine, EngineConfig
from stream.models import EventType, Interaction
from stream.pipeline import Pipeline

NOW = parse_time("2026-11-22T18:00:00Z")
TOPIC = "plays"


def _pipeline() -> Pipeline:
    return Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: NOW)


class _Log:
    """Events of four users per partition, keyed and placed like Kafka would."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def feed(self, pipeline: Pipeline, partition: int, n: int, *, first: int = 0) -> None:
        for i in range(first, first + n):
            user = f"p{partition}-u{i % 4}"
            offset = self.offsets.get(partition, 0)
            self.offsets[partition] = offset + 1
            event = Interaction(
                f"p{partition}-e{offset}",
                user,
                f"i{(i * 7 + partition) % 23}",
                EventType.PLAY,
                NOW - 1_000 + offset,
            )
            outcome = pipeline.ingest_event(
                encode_interaction(event),
                key=user.encode(),
                event_type=event.type,
                source=(TOPIC, partition, offset),
            )
            assert not hasattr(outcome, "reason"), outcome
            pipeline.advance(TOPIC, partition, offset + 1)


def _counts(pipeline: Pipeline) -> dict[str, dict[str, int]]:
    engine = pipeline.engine
    return {user: engine.user_counts(user) for user in engine.users}


def test_a_partitions_users_move_to_another_pipeline_with_their_positions():
    log = _Log()
    source = _pipeline()
    for partition in range(4):
        log.feed(source, partition, 10)
    before = _counts(source)

    target = _pipeline()
    log.feed(target, 3, 5)  # target holds older state of partition 3: replaced, not merged
    imported = target.import_partitions(source.export_partitions({1, 3}))

    assert imported == 8
    assert _counts(target) == {u: c for u, c in before.items() if u.startswith(("p1-", "p3-"))}
    assert target.position(TOPIC, 1) == 10 and target.position(TOPIC, 3) == 10
    assert target.position(TOPIC, 0) is None
    assert set(target.take_dirty()) == {u for u in before if u.startswith(("p1-", "p3-"))}
    # the exporter's de-dup window came along: a redelivered event is not learned twice
    again = Interaction("p1-e0", "p1-u0", "i1", EventType.PLAY, NOW - 1_000)
    outcome = target.ingest_event(
        encode_interaction(again), key=b"p1-u0", event_type=EventType.PLAY
    )
    assert outcome.reason is Reason.DUPLICATE
    assert _counts(source) == before, "exporting does not change the exporter"


def test_dropping_partitions_frees_their_users_and_forgets_their_positions():
    log = _Log()
    pipeline = _pipeline()
    for partition in range(3):
        log.feed(pipeline, partition, 8)
    assert pipeline.drop_partitions({0, 2}) == 8
    assert sorted(pipeline.engine.users) == [f"p1-u{i}" for i in range(4)]
    assert sorted(pipeline.positions) == [(TOPIC, 1)]
    assert set(pipeline.user_partitions.values()) == {1}


def test_adopt_takes_each_partition_from_the_checkpoint_that_got_furthest(tmp_path):
    log = _Log()
    old_owner, new_owner = _pipeline(), _pipeline()
    for partition in range(4):
        log.feed(old_owner, partition, 6)
    Checkpointer(tmp_path, old_owner, interval=0.0, name="w1").write_now()
    # partition 2 then moved to w2, which went further in it and checkpointed
    new_owner.import_partitions(old_owner.export_partitions({2}))
    log.feed(new_owner, 2, 5, first=6)
    Checkpointer(tmp_path, new_owner, interval=0.0, name="w2").write_now()
    assert read_header(tmp_path / "w2.ckpt").progress(2) == 11

    joiner = _pipeline()
    adopter = Checkpointer(tmp_path, joiner, interval=0.0, name="w3")
    taken = adopter.adopt({1, 2})

    assert taken == {1: "w1.ckpt", 2: "w2.ckpt"}
    counts = _counts(joiner)
    assert sorted(counts) == [f"p{p}-u{i}" for p in (1, 2) for i in range(4)]
    assert sum(sum(c.values()) for u, c in counts.items() if u.startswith("p2-")) == 11
    assert joiner.position(TOPIC, 2) == 11 and joiner.position(TOPIC, 1) == 6

    # a partition this state is already furthest in is kept, others are dropped
    assert adopter.adopt({2}) == {}
    assert sorted(_counts(joiner)) == [f"p2-u{i}" for i in range(4)]
    assert adopter.stats()["users_dropped"] == 4


def test_a_worker_without_a_checkpoint_starts_from_the_newest_one(tmp_path):
    log = _Log()
    first = _pipeline()
    log.feed(first, 0, 4)
    Checkpointer(tmp_path, first, interval=0.0, name="w1").write_now()

    newcomer = _pipeline()
    assert Checkpointer(tmp_path, newcomer, interval=0.0, name="w9").restore()
    assert newcomer.engine.items.row("i0") is not None, "the item replica came along"
