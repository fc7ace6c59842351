"""Partition handoff cost: export N users from one engine, pickle, import into another.

Run: ``.venv/bin/python bench/bench_transplant.py`` (defaults: 10,000 users with
30 simulated events each on average, 20,000 items; 500 of them served a list
first, for their Discover memory). The receiving engine has the
same catalog in reverse order, so every item row is translated. Timings are wall
time of this process (the machine may be shared: run it twice).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.engine import Engine, EngineConfig  # noqa: E402
from stream.simulator import World, WorldConfig  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--events-per-user", type=int, default=30)
    parser.add_argument("--lists", type=int, default=500, help="users served a list first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # Not every simulated listener shows up in a short stream: simulate more than are moved.
    world_users = args.users * 2
    world = World.generate(WorldConfig(n_users=world_users, n_items=args.items, seed=args.seed))
    source = Engine(EngineConfig(seed=args.seed))
    target = Engine(EngineConfig(seed=args.seed))
    for item in world.catalog:
        source.upsert_item(item)
    for item in reversed(world.catalog):
        target.upsert_item(item)
    started = time.perf_counter()
    now = 0.0
    for event in world.events(args.users * args.events_per_user):
        source.learn(event)
        now = event.timestamp
    users = list(source.users)[: args.users]
    if len(users) < args.users:
        parser.error(f"only {len(users)} users in the stream: raise --events-per-user")
    for user in users[: args.lists]:  # Discover memory, as after serving lists
        source.recommend(user, now=now)
    seen = sum(source.users[user].n_seen for user in users) / len(users)
    print(
        f"moving {len(users):,} of {len(source.users):,} users ({seen:.1f} items seen each on "
        f"average), {len(source.items):,} items; learned in {time.perf_counter() - started:.1f} s"
    )

    timings: dict[str, float] = {}

    def timed(name: str, call):  # type: ignore[no-untyped-def]
        begun = time.perf_counter()
        result = call()
        timings[name] = time.perf_counter() - begun
        return result

    exported = timed("export", lambda: source.export_users(users))
    data = timed("pickle", lambda: pickle.dumps(exported, protocol=pickle.HIGHEST_PROTOCOL))
    loaded = timed("unpickle", lambda: pickle.loads(data))
    imported = timed("import", lambda: target.import_users(loaded))
    timed("import again (replace)", lambda: target.import_users(loaded))
    timed("drop", lambda: target.drop_users(users))
    assert imported == len(users)
    for name, seconds in timings.items():
        print(f"{name:>24}: {seconds * 1_000:8.1f} ms  ({seconds / len(users) * 1e6:6.1f} µs/user)")
    print(
        f"{'pickled export':>24}: {len(data) / 1e6:8.1f} MB  ({len(data) / len(users):,.0f} B/user)"
    )
    return timings


if __name__ == "__main__":
    main()
