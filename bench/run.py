"""Throughput, freshness and memory of Encore's worker, next to the ceilings it runs under.

``make bench`` runs this. In one run, on one broker (a local one started here,
or ``--broker``):

1. **Backlog.** A simulated world (50,000 users x 20,000 items) publishes its
   catalog and 200,000 events once, into topics with a unique prefix.
2. **Ceilings** over those same events, each with a fresh consumer group: a raw
   aiokafka ``getmany`` + ``orjson.loads`` loop, and the bare Faust app
   (:mod:`bench.bare_faust_app`: an agent per topic that only decodes) with
   ``stream.events()`` and with ``stream.take_events()``.
3. **Worker backlog.** A fresh ``encore worker`` reads the backlog: events
   accepted per second (ingest), and per second until the last list was
   published (end to end). A worker that cannot finish within
   ``--worker-time-limit`` is measured over what it did.
4. **Paced runs.** A second fresh worker, warmed up on the catalog and the
   backlog (as much of it as it learns in ``--warmup-seconds``), gets new events
   at 80% of the measured maximum, then at ``--rate`` (5,000/s), for
   ``--duration`` seconds each, with ``occurred_at`` = the time they are
   produced. A reader on ``recommendations`` times every list: freshness = the
   list's arrival - the produce time of its ``last_event_id``.
5. **Memory.** A third fresh worker: RSS at rest, after the catalog entries of
   4 x 12,500 items (each step followed by one play of every item it added), and
   after events of 50,000 + 50,000 new users -> bytes per played item beyond the
   base (the slope of RSS over the items), and per user (the second step's growth
   over its users).
6. **Scale-out.** The same catalog and events, drained by one worker and then by
   two workers of one consumer group (fresh topics and group per run; distinct
   ``ENCORE_WORKER_ID``, web port and data dir, one shared checkpoint dir):
   events/s of each, the ratio, and each worker's partitions and CPU
   (:mod:`bench.scale_out`).

It prints a table with PASS/FAIL per target and writes the figures, targets,
ratios, git commit and machine facts to ``bench/results/<timestamp>.json`` and
``bench/results/latest.json`` (git-ignored) for comparison between commits.
Targets are reported, never asserted: the exit code is 0 when every phase
measured something, 1 when a phase failed (its error is in the JSON).

Usage::

    .venv/bin/python bench/run.py                  # the full run, a few minutes
    .venv/bin/python bench/run.py --quick          # small sizes, a smoke run
    .venv/bin/python bench/run.py --broker 127.0.0.1:9092 --skip-memory
    .venv/bin/python bench/run.py --phases scale_out   # the backlog, then one phase
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from any directory

from bench.common import (  # noqa: E402
    BenchTopics,
    Message,
    create_topics,
    event_payload,
    git_commit,
    machine_facts,
    now_stamp,
    produce_all,
    ratio,
)

DEFAULT_OUTPUT_DIR = ROOT / "bench" / "results"
PARTITIONS: Final = 8
BARE_FAUST_MODES: Final = ("events", "take_events")
#: What runs after the backlog is built (``--phases``); paced uses worker_backlog's maximum.
PHASES: Final = ("ceilings", "worker_backlog", "paced", "memory", "scale_out")

# The targets: one worker process on this 2-core machine, broker alongside.
TARGET_EVENTS_PER_SECOND: Final = 20_000.0
TARGET_USERS: Final = 50_000
TARGET_ITEMS: Final = 20_000
TARGET_FRESHNESS_RATE: Final = 5_000.0
TARGET_FRESHNESS_P50_MS: Final = 50.0
TARGET_FRESHNESS_P99_MS: Final = 250.0
TARGET_MEMORY_USERS: Final = 100_000
TARGET_MEMORY_ITEMS: Final = 50_000
#: Steps the memory run's items come in (the first pays the fixed base; a slope over all).
MEMORY_ITEM_STEPS: Final = 4
TARGET_BYTES_PER_USER: Final = 2 * 1024
TARGET_BYTES_PER_ITEM: Final = 1 * 1024
PACED_SHARE_OF_MAX: Final = 0.8
#: Figure names of the scale-out runs, by worker count.
SCALE_OUT_PHASES: Final = {1: "scale_out_one_worker", 2: "scale_out_two_workers"}


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and limits of one run (``--quick`` swaps in small defaults)."""

    events: int = 200_000
    users: int = TARGET_USERS
    items: int = TARGET_ITEMS
    rate: float = TARGET_FRESHNESS_RATE
    duration: float = 15.0
    memory_users: int = TARGET_MEMORY_USERS
    memory_items: int = TARGET_MEMORY_ITEMS
    memory_events_per_user: int = 2
    worker_time_limit: float = 90.0
    warmup_seconds: float = 30.0
    drain_timeout: float = 30.0
    seed: int = 0
    skip_memory: bool = False
    memory_publish: bool = False
    bare_faust_modes: tuple[str, ...] = BARE_FAUST_MODES
    phases: tuple[str, ...] = PHASES


QUICK = BenchConfig(
    events=10_000,
    users=2_000,
    items=1_000,
    rate=200.0,
    duration=3.0,
    memory_users=2_000,
    memory_items=1_000,
    memory_events_per_user=1,
    worker_time_limit=10.0,
    warmup_seconds=5.0,
    drain_timeout=5.0,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    full = BenchConfig()
    parser.add_argument("--events", type=int, help=f"backlog events (default {full.events:,})")
    parser.add_argument("--users", type=int, help=f"world's users (default {full.users:,})")
    parser.add_argument("--items", type=int, help=f"world's items (default {full.items:,})")
    parser.add_argument(
        "--rate", type=float, help=f"fixed paced rate, events/s (default {full.rate:,.0f})"
    )
    parser.add_argument(
        "--duration", type=float, help=f"seconds per paced run (default {full.duration:g})"
    )
    parser.add_argument(
        "--memory-users", type=int, help=f"users of the memory run (default {full.memory_users:,})"
    )
    parser.add_argument(
        "--memory-items", type=int, help=f"items of the memory run (default {full.memory_items:,})"
    )
    parser.add_argument(
        "--memory-events-per-user",
        type=int,
        help=f"events per user in the memory run (default {full.memory_events_per_user})",
    )
    parser.add_argument(
        "--memory-publish",
        action="store_true",
        help="publish lists during the memory run (default: deferred, see the JSON's note)",
    )
    parser.add_argument(
        "--worker-time-limit",
        type=float,
        help=f"seconds the worker gets for the backlog (default {full.worker_time_limit:g})",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        help=f"warm-up budget of the paced worker (default {full.warmup_seconds:g})",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        help=f"seconds a paced run waits for the worker (default {full.drain_timeout:g})",
    )
    parser.add_argument("--seed", type=int, help="world seed (default 0)")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory run")
    parser.add_argument(
        "--bare-faust-modes",
        help=f"comma-separated bare Faust modes (default {','.join(BARE_FAUST_MODES)})",
    )
    parser.add_argument(
        "--phases",
        help=f"comma-separated phases to run after the backlog (default {','.join(PHASES)})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--broker", help="host:port of a running broker (default: start a local one)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="where <timestamp>.json and latest.json go (default bench/results)",
    )
    parser.add_argument(
        "--keep-work-dir", action="store_true", help="keep logs and broker data after success"
    )
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> BenchConfig:
    """``--quick`` or the full defaults, with every explicitly given option on top."""
    base = QUICK if args.quick else BenchConfig()
    given = {
        name: getattr(args, name)
        for name in (
            "events",
            "users",
            "items",
            "rate",
            "duration",
            "memory_users",
            "memory_items",
            "memory_events_per_user",
            "worker_time_limit",
            "warmup_seconds",
            "drain_timeout",
            "seed",
        )
        if getattr(args, name) is not None
    }
    if args.skip_memory:
        given["skip_memory"] = True
    if args.memory_publish:
        given["memory_publish"] = True
    if args.bare_faust_modes:
        given["bare_faust_modes"] = _choices(
            args.bare_faust_modes, BARE_FAUST_MODES, "bare Faust modes"
        )
    if args.phases:
        given["phases"] = _choices(args.phases, PHASES, "phases")
    return dataclasses.replace(base, **given)


def _choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma-separated list of names from ``allowed`` (exits naming any other)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(names) - set(allowed)
    if unknown:
        raise SystemExit(f"unknown {what} {sorted(unknown)}; use {allowed}")
    return names


# --------------------------------------------------------------------------- phases


@contextlib.contextmanager
def broker_for(args: argparse.Namespace, work_dir: Path) -> Iterator[str]:
    """``--broker``, or a local broker in ``work_dir`` for the duration of the run."""
    if args.broker:
        yield args.broker
        return
    from stream.kafka_local import LocalKafka

    broker = LocalKafka(work_dir / "kafka", num_partitions=PARTITIONS)
    broker.start(fresh=True)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


class Phases:
    """Runs named phases, recording each one's figures or error, so the JSON always comes out."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.figures: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def run(self, name: str, measure: Callable[[], Any]) -> Any:
        self.console.print(f"[bold]{name}[/] ...")
        started = time.monotonic()
        try:
            result = measure()
        except Exception as error:  # noqa: BLE001 - one broken phase must not lose the others
            self.errors[name] = f"{type(error).__name__}: {error}"
            self.figures[name] = {"error": self.errors[name]}
            self.console.print(f"[red]{name} failed[/]: {error}")
            self.console.print(traceback.format_exc(), markup=False, highlight=False)
            return None
        self.figures[name] = result
        self.console.print(f"  done in {time.monotonic() - started:.1f}s: {_summary(result)}")
        return result


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return str(result)
    keys = [key for key in result if "per_second" in key or key.startswith("freshness")]
    return ", ".join(f"{key}={result[key]}" for key in keys[:3]) or "ok"


@dataclass
class Backlog:
    """The simulated world and its pre-produced messages."""

    world: Any
    catalog: list[Any]
    event_messages: list[Message]
    users_touched: int
    time_shift: float  # added to simulated event times so the backlog ends a minute ago


def build_backlog(config: BenchConfig) -> Backlog:
    from stream.simulator import World, WorldConfig

    world = World.generate(
        WorldConfig(n_users=config.users, n_items=config.items, seed=config.seed)
    )
    events = list(world.events(config.events))
    # Simulated time starts in 2026-01; moved so the backlog ends a minute before now
    # and the paced events (stamped with the real clock) come after it, as they would.
    shift = time.time() - 60.0 - events[-1].timestamp
    topics = BenchTopics("")  # retargeted per prefix when produced
    messages = [
        (
            topics.for_event_type(event.type),
            event.user_id.encode(),
            event_payload(event, occurred_at=event.timestamp + shift),
        )
        for event in events
    ]
    return Backlog(
        world=world,
        catalog=list(world.catalog),
        event_messages=messages,
        users_touched=len({event.user_id for event in events}),
        time_shift=shift,
    )


def backlog_messages(topics: BenchTopics, backlog: Backlog, n_events: int) -> list[Message]:
    """The catalog, then the first ``n_events`` backlog events, on ``topics``."""
    from bench.worker_runs import catalog_messages

    messages = catalog_messages(topics, backlog.catalog)
    messages += [
        (topics.name(base_name), key, value)
        for base_name, key, value in backlog.event_messages[:n_events]
    ]
    return messages


def produce_backlog(
    bootstrap: str, topics: BenchTopics, backlog: Backlog, n_events: int
) -> dict[str, Any]:
    """Create ``topics`` and produce the catalog and the first ``n_events`` backlog events."""

    async def produce() -> int:
        await create_topics(bootstrap, topics, PARTITIONS)
        return await produce_all(bootstrap, backlog_messages(topics, backlog, n_events))

    started = time.perf_counter()
    count = asyncio.run(produce())
    seconds = time.perf_counter() - started
    return {
        "topic_prefix": topics.prefix,
        "catalog_items": len(backlog.catalog),
        "events": n_events,
        "messages": count,
        "produce_seconds": round(seconds, 2),
        "produce_messages_per_second": round(count / seconds, 1),
    }


def worker_backlog_phase(
    bootstrap: str, topics: BenchTopics, config: BenchConfig, work_dir: Path
) -> dict[str, Any]:
    from bench.worker_runs import encore_worker, measure_backlog

    with encore_worker(bootstrap, topics, PARTITIONS, work_dir, "backlog") as worker:

        async def measure() -> dict[str, Any]:
            try:
                return await measure_backlog(
                    worker, config.events, config.items, config.worker_time_limit
                )
            finally:
                await worker.close()

        return asyncio.run(measure())


def worker_maximum(figures: dict[str, Any]) -> float | None:
    """The worker's measured maximum: end to end when it finished the backlog, else ingest."""
    backlog = figures.get("worker_backlog") or {}
    return backlog.get("end_to_end_events_per_second") or backlog.get("ingest_events_per_second")


def paced_phase(
    bootstrap: str,
    backlog: Backlog,
    config: BenchConfig,
    maximum: float | None,
    work_dir: Path,
) -> dict[str, Any]:
    """Warm a fresh worker on fresh topics, then the paced runs, slowest first.

    Slowest first: a run the worker cannot keep up with leaves a backlog behind
    that would spoil any run after it.
    """
    from bench.worker_runs import encore_worker, measure_round_trip, paced_run, warm_up

    # Only as much warm-up as the worker learns in the budget: a worker that is still
    # busy with its warm-up when paced events arrive would measure that backlog instead.
    affordable = int((maximum or 0.0) * config.warmup_seconds)
    warmup_events = max(0, min(config.events, affordable))
    topics = BenchTopics(f"bench{uuid.uuid4().hex[:8]}-paced-")
    produced = produce_backlog(bootstrap, topics, backlog, warmup_events)
    runs: list[tuple[str, float]] = [("fixed", config.rate)]
    if maximum:
        runs.append(("share_of_max", PACED_SHARE_OF_MAX * maximum))
    runs.sort(key=lambda run: run[1])
    result: dict[str, Any] = {"warmup": {**produced}, "runs": {}}

    with encore_worker(bootstrap, topics, PARTITIONS, work_dir, "paced") as worker:

        async def measure() -> None:
            try:
                warm = await warm_up(
                    worker,
                    warmup_events,
                    len(backlog.catalog),
                    timeout=max(60.0, 3 * config.warmup_seconds),
                )
                result["warmup"].update(warm)
                result["kafka_round_trip"] = await measure_round_trip(
                    bootstrap, topics.probe, PARTITIONS
                )
                produced_so_far = warmup_events
                events_per_user = Counter(
                    key.decode() for _, key, _ in backlog.event_messages[:warmup_events]
                )
                for number, (label, rate) in enumerate(runs):
                    events = list(backlog.world.events(max(1, int(rate * config.duration))))
                    run = await paced_run(
                        bootstrap,
                        topics,
                        PARTITIONS,
                        worker,
                        events,
                        rate,
                        tag=f"paced{number}",
                        drain_timeout=config.drain_timeout,
                        events_produced_before=produced_so_far,
                        prior_events=events_per_user,
                    )
                    produced_so_far += len(events)
                    events_per_user.update(event.user_id for event in events)
                    result["runs"][label] = {"label": label, **run}
            finally:
                await worker.close()

        asyncio.run(measure())
    return result


def memory_phase(bootstrap: str, config: BenchConfig, work_dir: Path) -> dict[str, Any]:
    """A fresh worker on fresh topics: RSS at rest, after the catalog, after the users."""
    from bench.worker_runs import (
        ItemStep,
        catalog_messages,
        encore_worker,
        item_play_events,
        measure_memory,
        memory_events,
    )
    from stream.simulator import World, WorldConfig

    # The catalog of a world with few users: building a world costs ~0.2 ms per user.
    items = list(
        World.generate(
            WorldConfig(n_users=10, n_items=config.memory_items, seed=config.seed + 1)
        ).catalog
    )
    topics = BenchTopics(f"bench{uuid.uuid4().hex[:8]}-memory-")
    asyncio.run(create_topics(bootstrap, topics, PARTITIONS))
    # Two steps of new users: the second one's growth is the per-user cost beyond the base.
    first_step = config.memory_users // 2
    users_per_step = [first_step, config.memory_users - first_step]
    steps = [
        memory_events(
            topics,
            n_users,
            items,
            config.memory_events_per_user,
            seed=config.seed + step,
            now=time.time(),
            first_user=step * first_step,
        )
        for step, n_users in enumerate(users_per_step)
    ]
    # Deferred publishing by default: today's publisher needs milliseconds per list, and
    # 100,000 users would be 100,000 lists. What is measured is then the learned state.
    extra_env = {} if config.memory_publish else {"ENCORE_PUBLISH_INTERVAL_MS": str(3_600_000)}
    # Items in steps too: beyond the first, their growth is the per-item cost beyond the base.
    per_step = -(-len(items) // MEMORY_ITEM_STEPS)
    item_parts = [items[start : start + per_step] for start in range(0, len(items), per_step)]
    with encore_worker(bootstrap, topics, PARTITIONS, work_dir, "memory", extra_env) as worker:

        async def measure() -> dict[str, Any]:
            def loader(messages: Callable[[], list[Any]]) -> Callable[[], Awaitable[None]]:
                async def load() -> None:
                    await produce_all(bootstrap, messages())

                return load

            item_steps = [
                ItemStep(
                    len(step_items),
                    loader(lambda step_items=step_items: catalog_messages(topics, step_items)),
                    loader(
                        lambda step_items=step_items, first=first: item_play_events(
                            topics, step_items, now=time.time(), first_number=first
                        )
                    ),
                )
                for step_items, first in zip(
                    item_parts, range(0, len(items), per_step), strict=True
                )
            ]
            try:
                return await measure_memory(
                    worker,
                    item_steps,
                    [loader(lambda events=events: events) for events in steps],
                    users_per_step=users_per_step,
                    events_per_step=[len(events) for events in steps],
                    timeout=600.0,
                    lists_deferred=not config.memory_publish,
                )
            finally:
                await worker.close()

        result = asyncio.run(measure())
    # Items a step's events name for the first time: their learned state (factors,
    # co-occurrence, popularity) grows with that step, not with the catalog.
    touched: set[str] = set()
    import orjson

    result["items_first_named_per_step"] = []
    for events in steps:
        before = len(touched)
        touched.update(orjson.loads(payload)["item_id"] for _, _, payload in events)
        result["items_first_named_per_step"].append(len(touched) - before)
    result["lists_published_during_run"] = config.memory_publish
    return result


def scale_out_phase(
    bootstrap: str, backlog: Backlog, config: BenchConfig, workers: int, work_dir: Path
) -> dict[str, Any]:
    """``workers`` workers of a fresh group drain the backlog, produced once they settled."""
    from bench.scale_out import scale_out_run

    topics = BenchTopics(f"bench{uuid.uuid4().hex[:8]}-scale{workers}-")
    asyncio.run(create_topics(bootstrap, topics, PARTITIONS))
    result = scale_out_run(
        bootstrap,
        topics,
        PARTITIONS,
        work_dir,
        workers,
        backlog_messages(topics, backlog, config.events),
        config.events,
        config.worker_time_limit,
    )
    return {"catalog_items": len(backlog.catalog), **result}


def run_phases(phases: Phases, bootstrap: str, config: BenchConfig, work_dir: Path) -> None:
    from bench.ceilings import measure_bare_faust, run_raw_aiokafka

    topics = BenchTopics(f"bench{uuid.uuid4().hex[:8]}-")
    made: dict[str, Backlog] = {}

    def backlog() -> dict[str, Any]:
        started = time.perf_counter()
        made["backlog"] = built = build_backlog(config)
        simulated = time.perf_counter() - started
        figures = produce_backlog(bootstrap, topics, built, config.events)
        return {
            "users": config.users,
            "items": config.items,
            "users_touched": built.users_touched,
            "simulate_seconds": round(simulated, 1),
            **figures,
        }

    if phases.run("backlog", backlog) is None:
        return  # nothing to measure without it
    if "ceilings" in config.phases:
        phases.run(
            "raw_aiokafka",
            lambda: run_raw_aiokafka(bootstrap, topics.event_topics, config.events),
        )
        for mode in config.bare_faust_modes:
            phases.run(
                f"bare_faust_{mode}",
                lambda mode=mode: measure_bare_faust(
                    bootstrap, topics.event_topics, config.events, mode, work_dir
                ),
            )
    if "worker_backlog" in config.phases:
        phases.run(
            "worker_backlog", lambda: worker_backlog_phase(bootstrap, topics, config, work_dir)
        )
    maximum = worker_maximum(phases.figures)
    if "paced" in config.phases:
        phases.run(
            "paced", lambda: paced_phase(bootstrap, made["backlog"], config, maximum, work_dir)
        )
    if "memory" in config.phases and not config.skip_memory:
        phases.run("memory", lambda: memory_phase(bootstrap, config, work_dir))
    if "scale_out" in config.phases:
        from bench.scale_out import WORKER_COUNTS

        for workers in WORKER_COUNTS:
            phases.run(
                SCALE_OUT_PHASES[workers],
                lambda workers=workers: scale_out_phase(
                    bootstrap, made["backlog"], config, workers, work_dir
                ),
            )


# --------------------------------------------------------------------------- verdicts


def _figure(figures: dict[str, Any], *path: str) -> Any:
    """``figures[a][b]...``, or ``None`` where a phase failed or did not run."""
    value: Any = figures
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def ratios(figures: dict[str, Any]) -> dict[str, float | None]:
    raw = _figure(figures, "raw_aiokafka", "events_per_second")
    bare = _figure(figures, "bare_faust_events", "events_per_second")
    bare_batched = _figure(figures, "bare_faust_take_events", "events_per_second")
    worker = worker_maximum(figures)
    ingest = _figure(figures, "worker_backlog", "ingest_events_per_second")
    from bench.scale_out import scale_out_ratios

    return {
        "worker_to_raw": ratio(worker, raw),
        "worker_to_bare_faust": ratio(worker, bare),
        "worker_ingest_to_bare_faust": ratio(ingest, bare),
        "bare_faust_events_to_raw": ratio(bare, raw),
        "bare_faust_take_events_to_raw": ratio(bare_batched, raw),
        **scale_out_ratios(figures.get(SCALE_OUT_PHASES[1]), figures.get(SCALE_OUT_PHASES[2])),
    }


def acceptance(figures: dict[str, Any], config: BenchConfig) -> list[dict[str, Any]]:
    """Each target with its measured figure and PASS, FAIL or SKIP (not measured, other sizes)."""
    checks: list[dict[str, Any]] = []

    def check(target: str, measured: float | None, passed: bool | None, note: str = "") -> None:
        verdict = "SKIP" if passed is None else "PASS" if passed else "FAIL"
        checks.append({"target": target, "measured": measured, "verdict": verdict, "note": note})

    backlog = figures.get("worker_backlog") or {}
    speed = worker_maximum(figures)
    at_target_size = config.users == TARGET_USERS and config.items == TARGET_ITEMS
    if speed is None:
        check("worker events/s >= 20,000", None, None, "not measured")
    elif not at_target_size:
        check("worker events/s >= 20,000", speed, None, "world differs from 50,000 x 20,000")
    else:
        complete = bool(backlog.get("complete"))
        note = "" if complete else "backlog unfinished in the time limit; rate over what it did"
        check(
            "worker events/s >= 20,000 (end to end)",
            speed,
            complete and speed >= TARGET_EVENTS_PER_SECOND,
            note,
        )

    fixed = _figure(figures, "paced", "runs", "fixed") or {}
    for name, limit in (("p50", TARGET_FRESHNESS_P50_MS), ("p99", TARGET_FRESHNESS_P99_MS)):
        target = f"freshness {name} at 5,000 events/s <= {limit:g} ms"
        measured = _figure(fixed, "freshness_ms", name)
        if measured is None:
            check(target, None, None, "not measured")
        elif config.rate != TARGET_FRESHNESS_RATE:
            check(target, measured, None, f"paced at {config.rate:g}/s, not 5,000/s")
        elif not fixed["producer_kept_pace"]:
            check(target, measured, None, "the producer did not keep the pace")
        elif not fixed["worker_caught_up"]:
            share = fixed["events_reflected_share"]
            check(target, measured, False, f"worker fell behind; {share:.1%} of events got a list")
        else:
            check(target, measured, measured <= limit)

    memory = figures.get("memory") or {}
    at_memory_size = (
        config.memory_users == TARGET_MEMORY_USERS and config.memory_items == TARGET_MEMORY_ITEMS
    )
    for what, limit in (("user", TARGET_BYTES_PER_USER), ("item", TARGET_BYTES_PER_ITEM)):
        target = f"memory per {what} <= {limit:,} bytes"
        kib = memory.get(f"kib_per_{what}")
        measured = None if kib is None else round(kib * 1024)
        if measured is None:
            check(target, None, None, "not measured")
        elif not at_memory_size:
            check(target, measured, None, "memory run sizes differ from 100,000 x 50,000")
        else:
            check(target, measured, measured <= limit)
    return checks


# --------------------------------------------------------------------------- output


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_tables(console: Any, document: dict[str, Any]) -> None:
    from rich.table import Table

    figures, shares = document["figures"], document["ratios"]
    raw = _figure(figures, "raw_aiokafka", "events_per_second")

    throughput = Table(title="Throughput over the same backlog (first to last event)")
    for column in ("measurement", "events/s", "x raw", "CPU µs/event", "notes"):
        justify = "left" if column in ("measurement", "notes") else "right"
        throughput.add_column(column, justify=justify)

    def add(label: str, speed: float | None, cpu: float | None, notes: str = "") -> None:
        shown_ratio = ratio(speed, raw)
        throughput.add_row(label, _number(speed), _number(shown_ratio, 4), _number(cpu, 1), notes)

    def failed(figure: dict[str, Any]) -> str:
        return "failed: see errors" if figure.get("error") else ""

    raw_figure = figures.get("raw_aiokafka") or {}
    add(
        "raw aiokafka getmany + orjson", raw, raw_figure.get("cpu_us_per_event"), failed(raw_figure)
    )
    for mode, label in (("events", "stream.events()"), ("take_events", "take_events(2000)")):
        bare = figures.get(f"bare_faust_{mode}")
        if bare is not None:
            add(
                f"bare Faust agent, {label}",
                bare.get("events_per_second"),
                bare.get("cpu_us_per_event"),
                failed(bare),
            )
    backlog = figures.get("worker_backlog") or {}
    partial = (
        f"partial: {backlog.get('events_accepted', 0):,} events in the time limit"
        if backlog and not backlog.get("complete", True)
        else ""
    )
    add(
        "Encore worker, events accepted",
        backlog.get("ingest_events_per_second"),
        backlog.get("cpu_us_per_event_ingest"),
        failed(backlog) or partial,
    )
    add(
        "Encore worker, to published lists",
        backlog.get("end_to_end_events_per_second"),
        None,
        failed(backlog)
        or partial
        or f"{backlog.get('lists_published', 0):,} lists, "
        f"{backlog.get('events_per_list', 0):.1f} events/list",
    )
    if raw_figure or backlog or any(f"bare_faust_{mode}" in figures for mode in BARE_FAUST_MODES):
        console.print(throughput)  # not when --phases left all of them out
    if backlog and not backlog.get("error"):
        idle = backlog.get("machine_idle_share")
        console.print(
            f"worker during the backlog: {backlog['cpu_share_of_one_core']:.2f} of one core; "
            f"machine idle {'-' if idle is None else f'{idle:.0%}'}"
        )

    paced = Table(
        title="Freshness: produce -> list readable on recommendations (ms)",
        caption="reflected: share of the run's events a list of their user then accounted "
        "for (based_on_events); idle: the machine's idle CPU during the run",
    )
    for column in (
        "run", "target/s", "sent/s", "worker/s", "p50", "p95", "p99", "lists",
        "ev/list", "reflected", "caught up", "idle",
    ):  # fmt: skip
        paced.add_column(column, justify="left" if column == "run" else "right")
    for label, run in (_figure(figures, "paced", "runs") or {}).items():
        freshness = run["freshness_ms"]
        reflected, idle = run["events_reflected_share"], run["machine_idle_share"]
        paced.add_row(
            label,
            _number(run["target_events_per_second"]),
            _number(run["achieved_events_per_second"])
            + ("" if run["producer_kept_pace"] else " (behind)"),
            _number(run["worker_events_per_second"]),
            _number(freshness["p50"], 1),
            _number(freshness["p95"], 1),
            _number(freshness["p99"], 1),
            _number(run["lists_about_this_run"]),
            _number(run["worker_events_per_list"], 1),
            "-" if reflected is None else f"{reflected:.1%}",
            _number(run["worker_caught_up"])
            + ("" if run["worker_caught_up"] else f" ({run['worker_backlog_at_stop']:,} left)"),
            "-" if idle is None else f"{idle:.0%}",
        )
    if paced.row_count:  # not when --phases left the paced runs out
        console.print(paced)
    probe = _figure(figures, "paced", "kafka_round_trip", "ms")
    if probe:
        console.print(
            f"Kafka alone (probe topic, same producer and reader): p50 {probe['p50']:.1f} ms, "
            f"p99 {probe['p99']:.1f} ms - the floor under every freshness figure"
        )

    print_scale_out(console, figures, shares)

    memory = figures.get("memory") or {}
    if memory and not memory.get("error"):
        console.print(
            f"memory: base {memory['base_rss_mib']} MiB, +{memory['items']:,} items played once "
            f"{memory['after_item_plays_rss_mib']} MiB, +{memory['users']:,} users "
            f"{memory['after_users_rss_mib']} MiB -> "
            f"{memory['kib_per_item'] * 1024:,.0f} bytes/item played once beyond the base "
            f"(the slope over {len(memory['items_per_step'])} steps; "
            f"{memory['kib_per_item_in_catalog'] * 1024:,.0f} in the catalog only; "
            f"{memory['kib_per_item_average'] * 1024:,.0f} on average), "
            f"{memory['kib_per_user'] * 1024:,.0f} bytes/user beyond the base "
            f"(the last {memory['users_per_step'][-1]:,} users; "
            f"{memory['kib_per_user_average'] * 1024:,.0f} bytes/user on average)"
        )
    console.print(
        "ratios: " + ", ".join(f"{key} {_number(value, 4)}" for key, value in shares.items())
    )
    for item in document["targets"]:
        colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}[item["verdict"]]
        note = f" - {item['note']}" if item["note"] else ""
        console.print(
            f"[{colour}]{item['verdict']}[/]  {item['target']}  "
            f"(measured {_number(item['measured'], 1)}){note}"
        )


def print_scale_out(console: Any, figures: dict[str, Any], shares: dict[str, Any]) -> None:
    """One worker and two side by side: the group's rates, then each worker's share."""
    from rich.table import Table

    runs = {workers: figures.get(name) for workers, name in SCALE_OUT_PHASES.items()}
    if not any(runs.values()):
        return
    table = Table(
        title="Scale-out: the same backlog, one worker vs two in one consumer group",
        caption="accepted/s: from the end of production to the last event accepted; "
        "lists/s: every event over first event -> last list published; "
        "CPU: cores, over the accepted/s window",
    )
    for column in (
        "run", "partitions", "events", "accepted/s", "x 1", "lists/s", "x 1", "CPU",
        "µs/event", "lists", "RSS MiB",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "run" else "right")
    notes = []
    for workers, run in runs.items():
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        if run is None:
            continue
        if run.get("error"):
            notes.append(f"{label}: failed, see errors")
            continue
        idle = run["machine_idle_share"]
        notes.append(
            f"{label}: {run['events_before_window']:,} of {run['events']:,} events accepted "
            "while the backlog was produced (not in accepted/s)"
            + ("" if run["complete"] else "; events unfinished in the time limit")
            + (
                f"; lists unfinished in the time limit "
                f"({run['users_waiting_for_a_list_at_stop']:,} users waiting)"
                if run["complete"] and not run["lists_drained"]
                else ""
            )
            + (
                "; the group rebalanced during the run"
                if run["assignment_changed_during_run"]
                else ""
            )
            + ("" if idle is None else f"; machine idle {idle:.0%}")
        )
        table.add_row(
            label,
            _number(sum(worker["event_partitions"] for worker in run["per_worker"])),
            _number(run["events_accepted"]),
            _number(run["ingest_events_per_second"]),
            _number(1.0 if workers == 1 else shares.get("two_workers_to_one_ingest"), 2),
            _number(run["end_to_end_events_per_second"]),
            _number(1.0 if workers == 1 else shares.get("two_workers_to_one_end_to_end"), 2),
            _number(run["cpu_share_of_one_core"], 2),
            "",
            _number(run["lists_published"]),
            "",
        )
        for number, worker in enumerate(run["per_worker"], start=1):
            table.add_row(
                f"  worker {number}",
                _number(worker["event_partitions"]),
                _number(worker["events_accepted"]),
                _number(worker["ingest_events_per_second"]),
                "",
                "",
                "",
                _number(worker["cpu_share_of_one_core"], 2),
                _number(worker["cpu_us_per_event"], 1),
                _number(worker["lists_published"]),
                _number(worker["rss_mib_after"], 1),
            )
    console.print(table)
    for note in notes:
        console.print(note)


def write_results(document: dict[str, Any], output_dir: Path) -> Path:
    """``<timestamp>.json`` and a copy as ``latest.json``; returns the first."""
    output_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    path = output_dir / f"{document['run_id']}.json"
    path.write_text(text, encoding="utf-8")
    (output_dir / "latest.json").write_text(text, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from(args)
    from rich.console import Console

    from stream.settings import Settings

    console = Console()
    if not console.is_terminal:
        console = Console(width=130)  # logs and pipes: wide enough for the tables
    work_dir = Path(tempfile.mkdtemp(prefix="encore-bench-"))
    started = time.time()
    document: dict[str, Any] = {
        "benchmark": "encore-throughput",
        "schema_version": 1,
        "run_id": now_stamp(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "git": git_commit(),
        "machine": machine_facts(),
        "config": {
            **dataclasses.asdict(config),
            "quick": args.quick,
            "partitions": PARTITIONS,
            "broker": args.broker or "local, started by the benchmark",
            # The workers inherit this process's environment, so they use the same value.
            "worker_publish_interval_ms": Settings().publish_interval_ms,
        },
    }
    console.print(f"[bold]Encore throughput benchmark[/] (work dir {work_dir})")
    phases = Phases(console)
    try:
        with broker_for(args, work_dir) as bootstrap:
            console.print(f"broker {bootstrap}")
            run_phases(phases, bootstrap, config, work_dir)
    except Exception as error:  # noqa: BLE001 - the broker itself: still write what we have
        phases.errors["broker"] = f"{type(error).__name__}: {error}"
        console.print(f"[red]broker failed[/]: {error}")
    document["figures"] = phases.figures
    document["ratios"] = ratios(phases.figures)
    document["targets"] = acceptance(phases.figures, config)
    document["errors"] = phases.errors
    document["notes"] = NOTES
    document["machine"]["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    document["duration_seconds"] = round(time.time() - started, 1)
    # Others may edit the working tree while the benchmark runs: each worker runs the
    # code as it was when it started.
    document["git"]["dirty_at_end"] = git_commit()["dirty"]
    print_tables(console, document)
    path = write_results(document, args.output_dir)
    console.print(f"figures written to {path} and {args.output_dir / 'latest.json'}")
    if phases.errors or args.keep_work_dir:
        console.print(f"logs kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    console.print(f"took {document['duration_seconds']:.0f}s")
    return 1 if phases.errors else 0


NOTES: Final = {
    "timing": "Every rate is timed from the first message seen to the last, leaving out "
    "process start-up and group joins.",
    "worker_backlog": "ingest = events accepted per second; end to end = until the last "
    "list was published. The catalog is read concurrently with the events.",
    "paced": "freshness = arrival of a list on recommendations - produce time of its "
    "last_event_id (producer linger 2 ms included). A list reflects the first "
    "based_on_events (minus the user's events from before the run) of its user's events "
    "in send order: events_reflected_share and event_to_first_list_ms count those. Runs "
    "go slowest first; a run the worker cannot keep up with is cut at the drain timeout.",
    "scale_out": "Per run: fresh topics and consumer group, the workers started together "
    "on the empty topics and settled (each event partition with one owner) before the "
    "catalog and the backlog events were produced. ingest = events accepted from the "
    "end of production (or the first accepted event, if later) to the last, per second; "
    "end to end = every event over first event accepted -> last list published. Workers "
    "differ only in ENCORE_WORKER_ID, ENCORE_WEB_PORT and ENCORE_DATA_DIR and share "
    "ENCORE_CHECKPOINT_DIR; each learns from the partitions it is assigned.",
    "memory": "RSS (VmRSS) of a fresh worker, each reading taken one allocator-trim period "
    "after the step. Items come in steps, each its catalog entries and then one play "
    "of every item. Per item = the least-squares slope of RSS after each step's plays over "
    "the items so far: the cost of a played item beyond the fixed base the first step pays "
    "(kib_per_item_in_catalog: the later catalog steps' growth over their items; "
    "kib_per_item_average: (after every item's play - base) / items, the fixed base "
    "included). Per user = the growth during the last step of new users / its users: the "
    "cost per user beyond the fixed base (kib_per_user_average: over all users, since the "
    "item plays). "
    "Unless lists_published_during_run, publishing "
    "was deferred (ENCORE_PUBLISH_INTERVAL_MS = 1 h): the figure is the learned state "
    "plus the set of users waiting for a list.",
}


if __name__ == "__main__":
    raise SystemExit(main())
