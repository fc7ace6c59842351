"""Two workers, one consumer group, 8 partitions: user state moves with partitions.

A producer streams simulated events while

1. worker ``w1`` runs alone (all 8 partitions);
2. worker ``w2`` joins: ``w1`` checkpoints on revocation, ``w2`` takes the users of
   the partitions it is given from that checkpoint (a live handover);
3. ``w1`` is SIGKILLed mid-stream: after its session times out ``w2`` gets every
   partition and takes ``w1``'s users from ``w1``'s last periodic checkpoint (a
   handover from the dead), re-reading what that checkpoint did not cover.

``w2`` must then answer for every user within 30 s of the kill, and after the
stream every user's play/skip/replay counts in ``w2`` must equal the events
produced: nothing lost, nothing counted twice. While both ran, each learned from
its own users and applied the other's item updates.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from stream.processes import free_port, start_worker, stop_process, wait_until_ready
from stream.simulator import World, WorldConfig
from tests.worker_http import get_json, produce_paced, status_of, wait_for

pytestmark = pytest.mark.broker

PARTITIONS = 8
EVENTS = 40_000
SERVING_WITHIN = 30.0
RATE = 2_000.0  # events/s: the stream lasts ~20 s, so the join and the kill land mid-stream


def _worker_env(base: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    return {
        **base,
        "ENCORE_PARTITIONS": str(PARTITIONS),
        "ENCORE_WORKER_ID": name,
        "ENCORE_DATA_DIR": str(tmp_path / name),
        "ENCORE_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "ENCORE_CHECKPOINT_INTERVAL_SECONDS": "1",
        "ENCORE_WEB_PORT": str(free_port()),
    }


async def test_partitions_move_with_their_users_on_join_and_on_death(worker_env, tmp_path):
    env1 = _worker_env(worker_env.env, tmp_path, "w1")
    env2 = _worker_env(worker_env.env, tmp_path, "w2")
    port1, port2 = env1["ENCORE_WEB_PORT"], env2["ENCORE_WEB_PORT"]
    log1, log2 = tmp_path / "w1.log", tmp_path / "w2.log"
    world = World.generate(WorldConfig(n_users=400, n_items=2_000, seed=11))
    events = list(world.events(EVENTS))

    w1 = start_worker(env1, log1)
    w2 = None
    try:
        await asyncio.to_thread(wait_until_ready, w1, log1)
        producing = asyncio.create_task(
            produce_paced(worker_env, events, rate=RATE, id_prefix="scale-")
        )
        await asyncio.sleep(2.0)
        w2 = start_worker(env2, log2)
        await asyncio.to_thread(wait_until_ready, w2, log2)
        # both learn from their own users and hear of the other's items
        await wait_for(lambda: get_json(port2, "/stats/")["events_accepted"] > 0, 60)
        await wait_for(lambda: get_json(port2, "/stats/")["item_updates"]["applied"] > 0, 30)
        await wait_for(lambda: get_json(port1, "/stats/")["item_updates"]["applied"] > 0, 30)
        joined = get_json(port2, "/stats/")
        assert 0 < len(get_json(port1, "/stats/")["partitions_held"]) < PARTITIONS, (
            "w1 gave some up"
        )
        users_of_w1 = sorted(get_json(port1, "/stats/user-counts/"))
        assert not producing.done(), "w2 joined after the stream ended: slow machine?"

        w1.send_signal(signal.SIGKILL)
        w1.wait(timeout=10)
        killed_at = time.monotonic()
        # A user of w1's: w2 answers for them once it took their partition over.
        witness = users_of_w1[0]

        def serves_everyone() -> bool:
            stats = get_json(port2, "/stats/")
            return (
                len(stats["partitions_held"]) == PARTITIONS
                and status_of(port2, f"/users/{witness}/recommendations") == 200
            )

        await wait_for(serves_everyone, SERVING_WITHIN + 30)
        serving_after = time.monotonic() - killed_at
        truth = await producing

        def caught_up() -> bool:
            counts = get_json(port2, "/stats/user-counts/")
            return sum(sum(c.values()) for c in counts.values()) >= EVENTS

        await wait_for(caught_up, 120)
        counts = get_json(port2, "/stats/user-counts/")
        stats = get_json(port2, "/stats/")
    finally:
        if w2 is not None:
            stop_process(w2)
        stop_process(w1)

    print(  # noqa: T201 - the figures of the closing note (pytest -s)
        f"w2 joined: took {joined['partitions_adopted']} partitions "
        f"({joined['users_adopted']} users) from w1's revocation checkpoint; "
        f"after the SIGKILL: {stats['partitions_adopted']} partitions adopted in all, "
        f"serving every partition {serving_after:.1f}s after the kill; "
        f"item updates applied {stats['item_updates']['applied']}, "
        f"sent {stats['item_updates']['sent']}"
    )
    assert joined["partitions_adopted"] >= 1, "w2 took its first partitions from w1's state"
    assert stats["partitions_adopted"] == PARTITIONS, "and the rest after w1 died"
    assert serving_after < SERVING_WITHIN
    assert stats["rejected_by_reason"] == {}
    expected = {
        user: {"play": kinds["play"], "skip": kinds["skip"], "replay": kinds["replay"]}
        for user, kinds in truth.items()
    }
    assert counts == expected
