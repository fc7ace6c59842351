"""Checkpoint and recovery costs with 100,000 users of state.

Builds a pipeline the way a worker does (events through ``Pipeline.ingest_event``),
then measures: the checkpoint's size, the pause a forked checkpoint costs the
worker (the fork itself), the child's time to write it, a synchronous write,
and the restore a restarted worker does before it consumes. Restarting the
worker process adds its start-up and group join on top (measured by
``tests/test_crash_recovery.py``).

Run: ``.venv/bin/python bench/bench_recovery.py`` (``--users``, ``--items``,
``--events-per-user``). Figures, not assertions.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.checkpoint import Checkpointer  # noqa: E402
from stream.contracts import encode_catalog_item, encode_interaction  # noqa: E402
from stream.engine import Engine, EngineConfig  # noqa: E402
from stream.models import CatalogItem, EventType, Interaction  # noqa: E402
from stream.pipeline import Pipeline  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--events-per-user", type=int, default=10)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    pipeline = Pipeline(Engine(EngineConfig(seed=0)), max_event_age=0)
    for n in range(args.items):
        item = CatalogItem(
            f"item-{n}", f"Title {n}", f"artist-{n % 2000}", (f"genre-{n % 40}",), 200_000, 0.0
        )
        pipeline.ingest_catalog(encode_catalog_item(item), key=item.item_id.encode())
    started = time.perf_counter()
    # Spread over the last ~hour, so no event is in the future of the pipeline's clock.
    span = args.users * args.events_per_user * 0.003
    now = time.time() - span - 60
    popular = rng.zipf(1.3, size=args.users * args.events_per_user) % args.items
    kinds = (EventType.PLAY, EventType.PLAY, EventType.PLAY, EventType.SKIP, EventType.REPLAY)
    for index, item in enumerate(popular.tolist()):
        user = f"user-{index // args.events_per_user}"
        kind = kinds[index % len(kinds)]
        event = Interaction(
            f"e{index}", user, f"item-{item}", kind, now + index * 0.003, ms_played=150_000
        )
        pipeline.ingest_event(encode_interaction(event), key=user.encode(), event_type=kind)
    pipeline.advance("plays", 0, len(popular))
    print(
        f"state: {len(pipeline.engine.users):,} users, {args.items:,} items, "
        f"{len(popular):,} events learned in {time.perf_counter() - started:.1f} s; "
        f"RSS {rss_mib():,.0f} MiB"
    )

    directory = Path(tempfile.mkdtemp(prefix="encore-recovery-"))
    checkpointer = Checkpointer(directory, pipeline, interval=0.0)
    fork_started = time.perf_counter()
    checkpointer.start()
    fork_pause = time.perf_counter() - fork_started
    while checkpointer.poll() is None:
        time.sleep(0.01)
    size_mib = checkpointer.last_bytes / 2**20
    print(
        f"forked checkpoint: worker paused {fork_pause * 1000:.1f} ms (the fork); "
        f"child wrote {size_mib:,.1f} MiB in {checkpointer.last_seconds:.2f} s"
    )
    checkpointer.write_now()
    print(f"synchronous checkpoint (stop/revoke): {checkpointer.last_seconds:.2f} s")

    fresh = Pipeline(Engine(EngineConfig(seed=0)))
    restorer = Checkpointer(directory, fresh, interval=0.0)
    restorer.restore()
    assert fresh.engine.user_counts("user-0") == pipeline.engine.user_counts("user-0")
    print(
        f"restore: {restorer.restore_seconds:.2f} s for {len(fresh.engine.users):,} users "
        f"({restorer.restored_events:,} events)"
    )


if __name__ == "__main__":
    main()
