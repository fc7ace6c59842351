"""Engine latency and memory: recommend() p50/p95/p99 over a large catalog, learn µs/event.

Run: ``.venv/bin/python bench/bench_engine.py`` (defaults: 50,000 items, 2,000
users, 60,000 simulated events, 500 recommend() calls). Timings are CPU time of
this process (``time.process_time_ns``) next to wall time, because the machine
is shared; BLAS is pinned to one thread (a worker's matrix-vector products are
small, and BLAS threads only add jitter on a busy machine).

Memory is measured with ``tracemalloc`` as the growth when adding users (each
with 20 events on already known, popular items) and items (catalog entry plus a
play) to an already trained engine, i.e. the marginal cost beyond a fixed base,
broken down by the module that allocated it.

``--take-every N`` also prices item updates (scale-out, issue 7): a second engine
learns the same events alongside, chunk by chunk in alternation with the first
(so both see the same machine load), and takes and encodes its item updates
every N events; the learn µs/event of both, their ratio and the take/encode cost
are printed. ``--learn-only`` stops after the learn figures.
"""

from __future__ import annotations

import os

# Before numpy is imported: one BLAS thread (see the module docstring).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.engine import Engine, EngineConfig  # noqa: E402
from stream.engine.item_updates import decode_item_updates, encode_item_updates  # noqa: E402
from stream.models import CatalogItem, EventType, Interaction  # noqa: E402
from stream.simulator import World, WorldConfig  # noqa: E402


def percentiles(samples_ns: list[int]) -> str:
    values = np.array(samples_ns) / 1_000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:8.0f} µs   p95 {p95:8.0f} µs   p99 {p99:8.0f} µs   max {values.max():8.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--take-every",
        type=int,
        default=0,
        help="also time an engine that takes item updates every N events (0: no)",
    )
    parser.add_argument("--learn-only", action="store_true", help="stop after learn figures")
    args = parser.parse_args()

    started = time.perf_counter()
    world = World.generate(WorldConfig(n_users=args.users, n_items=args.items, seed=args.seed))
    events = list(world.events(args.events))
    print(
        f"world: {args.users:,} users, {args.items:,} items, {len(events):,} events "
        f"({time.perf_counter() - started:.1f} s to simulate)"
    )

    engine = Engine(EngineConfig(seed=args.seed))
    for item in world.catalog:
        engine.upsert_item(item)
    if args.take_every > 0:
        learn_with_item_updates(engine, world, events, args.seed, args.take_every)
    else:
        cpu = time.process_time_ns()
        wall = time.perf_counter_ns()
        for event in events:
            engine.learn(event)
        learn_cpu = (time.process_time_ns() - cpu) / len(events) / 1_000
        learn_wall = (time.perf_counter_ns() - wall) / len(events) / 1_000
        print(
            f"learn: {learn_cpu:.1f} µs/event CPU ({learn_wall:.1f} µs wall), "
            f"{1e6 / learn_cpu:,.0f} events/s"
        )
    if args.learn_only:
        return

    rng = np.random.default_rng(args.seed)
    active = [u for u, state in engine.users.items() if state.n_events >= 5]
    now = events[-1].timestamp + 60.0
    devices = ["mobile", "desktop", "tv", None]
    requests = [
        (str(active[int(rng.integers(len(active)))]), devices[n % len(devices)])
        for n in range(args.requests)
    ]
    for user, device in requests[:20]:  # warm-up: caches, first-call allocations
        engine.recommend(user, now=now, device=device)
    cpu_ns: list[int] = []
    wall_ns: list[int] = []
    n_items = 0
    for user, device in requests:
        c0 = time.process_time_ns()
        w0 = time.perf_counter_ns()
        rec = engine.recommend(user, now=now, device=device)
        wall_ns.append(time.perf_counter_ns() - w0)
        cpu_ns.append(time.process_time_ns() - c0)
        n_items += len(rec.item_ids())
    print(
        f"recommend() over {len(engine.items):,} items, {len(requests)} known users "
        f"({n_items / len(requests):.0f} items per list):"
    )
    print(f"  CPU  {percentiles(cpu_ns)}")
    print(f"  wall {percentiles(wall_ns)}")
    cold_ns = []
    for n in range(100):
        c0 = time.process_time_ns()
        engine.recommend(f"cold-{n}", now=now, device=devices[n % len(devices)])
        cold_ns.append(time.process_time_ns() - c0)
    print(f"  cold-start users, CPU {percentiles(cold_ns)}")
    rank_ns = []
    for user, _ in requests[:200]:
        c0 = time.process_time_ns()
        engine.rank(user, 10, now=now)
        rank_ns.append(time.process_time_ns() - c0)
    print(f"rank(k=10), CPU {percentiles(rank_ns)}")
    skip_ns = []
    for event in events[-500:]:
        c0 = time.process_time_ns()
        engine.predict_skip(event)
        skip_ns.append(time.process_time_ns() - c0)
    print(f"predict_skip, CPU {percentiles(skip_ns)}")

    # Marginal memory of users and items beyond the trained base.
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    # Users play items the engine already knows (the popular ones, as real users mostly do),
    # so that item-side growth (new latents, new co-occurrence pairs) is not billed to users.
    item_ids = [engine.items.ids[row] for row in engine.popular_rows[:500]]
    t = now
    for n in range(1_000):
        for k in range(20):
            t += 1.0
            item_id = item_ids[int(rng.integers(len(item_ids)))]
            kind = EventType.SKIP if k % 4 == 3 else EventType.PLAY
            engine.learn(Interaction(f"m{n}-{k}", f"mem-user-{n}", item_id, kind, t, 120_000))
    after_users = tracemalloc.take_snapshot()
    user_diff = after_users.compare_to(base, "filename")
    per_user = sum(s.size_diff for s in user_diff) / 1_000
    for n in range(10_000):
        item = CatalogItem(f"mem-item-{n}", f"Title {n}", f"Artist {n % 900}", ("pop",), 200_000, t)
        engine.upsert_item(item)
        t += 1.0
        engine.learn(
            Interaction(f"mi{n}", f"mem-user-{n % 1_000}", item.item_id, EventType.PLAY, t)
        )
    after_items = tracemalloc.take_snapshot()
    tracemalloc.stop()
    item_diff = after_items.compare_to(after_users, "filename")
    per_item = sum(s.size_diff for s in item_diff) / 10_000
    print(
        f"memory: {per_user:,.0f} B per new user (20 events each), "
        f"{per_item:,.0f} B per new item (catalog entry + 1 play)"
    )
    for label, diff, count in (("user", user_diff, 1_000), ("item", item_diff, 10_000)):
        top = sorted(diff, key=lambda stat: -stat.size_diff)[:4]
        where = ", ".join(
            f"{Path(stat.traceback[0].filename).name} {stat.size_diff / count:,.0f} B"
            for stat in top
        )
        print(f"  per {label}, by allocating module: {where}")
    print(
        f"snapshot: {len(engine.snapshot()) / 1e6:.1f} MB for {len(engine.users):,} users, "
        f"{len(engine.items):,} items"
    )


def learn_with_item_updates(
    engine: Engine, world: World, events: list[Interaction], seed: int, every: int
) -> None:
    """Learn ``events`` into ``engine`` and into a twin that takes item updates every ``every``.

    Chunks of up to 250 events alternate between the two (CPU time of each summed),
    so that both run under the same load of a shared machine; which of the two
    learns a chunk first alternates too. Whichever engine is *created* second
    learns ~10% slower here even when the two are identical (memory layout), so
    this runs twice, the recording engine created second and then first, and
    reports both ratios and their geometric mean, which cancels that bias.
    """
    ratios = []
    for sharing_first in (False, True):
        if sharing_first:
            sharing = _fresh_engine(world, seed)
            plain = _fresh_engine(world, seed)
        else:
            plain, sharing = engine, _fresh_engine(world, seed)
        replica = _fresh_engine(world, seed)  # applies what ``sharing`` takes
        sharing.take_item_updates()  # the first take copies the count vectors: not per event
        replica.take_item_updates()
        plain_ns = sharing_ns = take_ns = encode_ns = apply_ns = 0
        n_bytes = n_takes = 0
        step = min(every, 250)
        for start in range(0, len(events), every):
            for part in range(start, min(start + every, len(events)), step):
                chunk = events[part : part + step]
                first_plain = (part // step + n_takes) % 2
                for learner in (plain, sharing) if first_plain else (sharing, plain):
                    c0 = time.process_time_ns()
                    for event in chunk:
                        learner.learn(event)
                    spent = time.process_time_ns() - c0
                    if learner is plain:
                        plain_ns += spent
                    else:
                        sharing_ns += spent
            c0 = time.process_time_ns()
            updates = sharing.take_item_updates()
            c1 = time.process_time_ns()
            data = b"" if updates is None else encode_item_updates(updates)
            c2 = time.process_time_ns()
            if updates is not None:
                replica.apply_item_updates(decode_item_updates(data))
            take_ns += c1 - c0
            encode_ns += c2 - c1
            apply_ns += time.process_time_ns() - c2
            n_bytes += len(data)
            n_takes += 1
        plain_us = plain_ns / len(events) / 1_000
        shared_us = sharing_ns / len(events) / 1_000
        ratios.append(shared_us / plain_us)
        print(
            f"learn ({'recording engine created first' if sharing_first else 'plain first'}): "
            f"{plain_us:.1f} µs/event CPU without item updates, {shared_us:.1f} µs/event "
            f"recording them (x{ratios[-1]:.3f}); every {every:,} events: "
            f"take {take_ns / n_takes / 1e6:.2f} ms + encode {encode_ns / n_takes / 1e6:.2f} ms "
            f"CPU ({(take_ns + encode_ns) / len(events) / 1_000:.1f} µs/event), "
            f"{n_bytes / n_takes / 1e3:,.0f} kB per update; decode + apply "
            f"{apply_ns / n_takes / 1e6:.2f} ms CPU ({apply_ns / len(events) / 1_000:.1f} µs/event)"
        )
    print(
        f"learn: recording item updates costs x{(ratios[0] * ratios[1]) ** 0.5:.3f} "
        "(geometric mean of the two orders)"
    )


def _fresh_engine(world: World, seed: int) -> Engine:
    engine = Engine(EngineConfig(seed=seed))
    for item in world.catalog:
        engine.upsert_item(item)
    return engine


if __name__ == "__main__":
    main()
