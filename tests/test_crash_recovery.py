"""SIGKILL the worker twice mid-stream: after catch-up every user's counts equal the truth.

A producer streams simulated events (acks=all, paced) while the worker is killed
with SIGKILL at random points and restarted. The worker restores its latest
checkpoint and re-reads from the offsets that checkpoint covers, so nothing is
lost and nothing counted twice: each user's play/skip/replay counts in the
worker's state must equal those of the events produced, exactly.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from stream.processes import start_worker, stop_process, wait_until_ready
from stream.simulator import World, WorldConfig
from tests.worker_http import get_json, produce_paced, wait_for

pytestmark = pytest.mark.broker

EVENTS = 50_000
RATE = 2_000.0  # events/s: the stream lasts ~25 s, so both kills land mid-stream
KILLS = 2


async def test_two_sigkills_mid_stream_lose_and_double_count_nothing(worker_env, tmp_path):
    env = {**worker_env.env, "ENCORE_CHECKPOINT_INTERVAL_SECONDS": "1"}
    port = env["ENCORE_WEB_PORT"]
    world = World.generate(WorldConfig(n_users=400, n_items=2_000, seed=7))
    events = list(world.events(EVENTS))
    rng = random.Random(7)

    process = start_worker(env, worker_env.log_path)
    try:
        await asyncio.to_thread(wait_until_ready, process, worker_env.log_path)
        producing = asyncio.create_task(
            produce_paced(worker_env, events, rate=RATE, id_prefix="crash-")
        )
        restarts = []
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(2.5, 4.5))
            accepted_before_kill = get_json(port, "/stats/")["events_accepted"]
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            log_size = worker_env.log_path.stat().st_size
            restarted_at = time.monotonic()
            process = start_worker(env, worker_env.log_path)
            await asyncio.to_thread(wait_until_ready, process, worker_env.log_path, since=log_size)
            published = get_json(port, "/stats/")["lists_published"]
            # Lists flow again: the count of published lists moves past its restored value.
            await wait_for(lambda p=published: get_json(port, "/stats/")["lists_published"] > p, 30)
            restarts.append(
                (accepted_before_kill, get_json(port, "/stats/"), time.monotonic() - restarted_at)
            )
        truth = await producing

        def caught_up() -> bool:
            return get_json(port, "/stats/")["events_accepted"] >= EVENTS

        await wait_for(caught_up, 120)
        counts = get_json(port, "/stats/user-counts/")
        stats = get_json(port, "/stats/")
    finally:
        stop_process(process)

    for n, (accepted_before_kill, after, seconds) in enumerate(restarts, 1):
        print(  # noqa: T201 - the figures of the closing note (pytest -s)
            f"restart {n}: {accepted_before_kill} events learned before SIGKILL, "
            f"{after['restored_events']} restored from the checkpoint "
            f"in {after['restore_seconds']:.2f}s, lists again {seconds:.1f}s after the restart"
        )
    for accepted_before_kill, after, seconds in restarts:
        assert after["checkpoints_restored"] == 1, "each restart restores a checkpoint"
        assert 0 < after["restored_events"] <= accepted_before_kill < EVENTS, "killed mid-stream"
        assert seconds < 30, f"lists flowed again only {seconds:.1f}s after the restart"
    assert stats["events_accepted"] == EVENTS
    assert stats["rejected_by_reason"] == {}, "no redelivered event was taken for a duplicate"
    expected = {
        user: {"play": kinds["play"], "skip": kinds["skip"], "replay": kinds["replay"]}
        for user, kinds in truth.items()
    }
    assert counts == expected
