"""Checkpoints on local disk: forked writes, waiting without blocking, restore."""

from __future__ import annotations

import asyncio
import os

from stream.checkpoint import Checkpointer
from stream.contracts import encode_interaction, parse_time
from stream.engine import Engine, EngineConfig
from stream.models import EventType, Interaction
from stream.pipeline import Pipeline

NOW = parse_time("2026-11-22T18:00:00Z")


def _pipeline() -> Pipeline:
    return Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: NOW)


def _learn(pipeline: Pipeline, n: int, user: str = "u1") -> None:
    for i in range(n):
        event = Interaction(f"{user}-e{i}", user, f"i{i % 7}", EventType.PLAY, NOW - 100 + i)
        pipeline.ingest_event(encode_interaction(event), key=user.encode(), event_type=event.type)


def test_a_forked_checkpoint_holds_the_state_at_the_fork_not_later(tmp_path):
    pipeline = _pipeline()
    _learn(pipeline, 5)
    pipeline.advance("plays", 0, 5)
    checkpointer = Checkpointer(tmp_path, pipeline, interval=0.0)
    checkpointer.start()
    _learn(pipeline, 3, user="u2")  # after the fork: not in this checkpoint
    pipeline.advance("plays", 0, 8)
    positions = checkpointer.wait()
    assert positions == {("plays", 0): 5}

    restored = _pipeline()
    assert Checkpointer(tmp_path, restored, interval=0.0).restore()
    assert restored.engine.user_counts("u1") == {"play": 5, "skip": 0, "replay": 0}
    assert restored.engine.user_counts("u2") is None
    assert restored.position("plays", 0) == 5


def test_write_waits_for_the_child_while_the_event_loop_runs(tmp_path):
    pipeline = _pipeline()
    _learn(pipeline, 4)
    pipeline.advance("plays", 1, 4)
    checkpointer = Checkpointer(tmp_path, pipeline, interval=60.0)
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    async def run() -> dict:
        ticker = asyncio.create_task(ticking())
        try:
            return await checkpointer.write()
        finally:
            ticker.cancel()

    assert asyncio.run(run()) == {("plays", 1): 4}
    assert ticks > 0
    assert checkpointer.written == 1 and checkpointer.failed == 0
    assert not checkpointer.due(), "a checkpoint just started: the next waits an interval"


def test_no_checkpoint_means_nothing_restored(tmp_path):
    assert not Checkpointer(tmp_path / "empty", _pipeline(), interval=1.0).restore()


class _NicenessPipeline:
    """A stand-in state whose snapshot is the nice value of the process taking it."""

    positions: dict = {}

    def snapshot(self) -> bytes:
        return str(os.nice(0)).encode()


def test_the_forked_writer_runs_at_a_lower_priority_than_the_worker(tmp_path):
    worker_niceness = os.nice(0)
    checkpointer = Checkpointer(tmp_path, _NicenessPipeline(), interval=0.0, writer_niceness=7)
    checkpointer.start()
    assert checkpointer.wait() == {}
    written = checkpointer.path.read_bytes()
    # The snapshot is the file's tail, after the header.
    assert written.endswith(str(min(worker_niceness + 7, 19)).encode())
    assert os.nice(0) == worker_niceness, "the worker's own priority is unchanged"


def test_checkpoints_are_spaced_by_the_writers_cpu_time_over_the_allowed_share(tmp_path):
    now = [100.0]
    pipeline = _pipeline()
    _learn(pipeline, 4)
    checkpointer = Checkpointer(
        tmp_path, pipeline, interval=2.0, max_cpu_share=0.25, clock=lambda: now[0]
    )
    checkpointer.start()
    checkpointer.wait()
    assert checkpointer.last_cpu_seconds is not None and checkpointer.last_cpu_seconds > 0
    # A small state: the writer took well under 0.5 s of CPU, so the interval stays 2 s.
    assert checkpointer.current_interval == 2.0
    now[0] += 2.0
    assert checkpointer.due()
    # A writer that took 3 s of CPU at a share of 0.25 means 12 s to the next one.
    checkpointer.last_cpu_seconds = 3.0
    assert checkpointer.current_interval == 12.0
    assert not checkpointer.due()
    now[0] += 10.0  # 12 s after the last start
    assert checkpointer.due()
    assert checkpointer.stats()["checkpoint_interval_seconds"] == 12.0


def test_without_a_cpu_share_the_interval_is_fixed(tmp_path):
    checkpointer = Checkpointer(tmp_path, _pipeline(), interval=2.0)
    checkpointer.last_cpu_seconds = 30.0
    assert checkpointer.current_interval == 2.0
