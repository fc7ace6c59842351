"""The project's own ``encore`` commands, added beside Faust's (``worker``, ``agents``, ...).

Every option can also be set by an environment variable, shown in ``--help``
(``[env var: ENCORE_...]``); most reuse the names of :class:`stream.settings.Settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console

from stream.settings import Settings, get_settings

console = Console(stderr=True)
out = Console()


def _option(*names: str, env: str, **kwargs: Any) -> Any:
    """A click option that reads ``env`` too and says so in ``--help``."""
    return click.option(*names, envvar=env, show_envvar=True, show_default=True, **kwargs)


def _fail(message: str) -> None:
    raise click.ClickException(message)


async def _checked_settings() -> Settings:
    """The settings, once a broker accepted them (else the command fails in one line)."""
    from stream.broker_check import BrokerUnavailable, check_broker

    settings = get_settings()
    try:
        await check_broker(settings)
    except BrokerUnavailable as error:
        _fail(str(error))
    return settings


# --------------------------------------------------------------------------- kafka


def _local_kafka(port: int | None = None, home: Path | None = None) -> Any:
    from stream.kafka_local import LocalKafka

    settings = get_settings()
    chosen_port = settings.kafka_port if port is None else port
    return LocalKafka(
        home or settings.kafka_home,
        version=settings.kafka_version,
        cache_dir=settings.kafka_cache,
        port=chosen_port or None,
        heap_options=settings.kafka_heap,
        num_partitions=settings.partitions,
    )


@click.group("kafka")
def kafka_group() -> None:
    """A local Apache Kafka broker (KRaft, single node) from Maven Central jars.

    Settings: ENCORE_KAFKA_VERSION, ENCORE_KAFKA_PORT (0 = a free port),
    ENCORE_KAFKA_HOME (data and log), ENCORE_KAFKA_CACHE (jar cache),
    ENCORE_KAFKA_HEAP.
    """


@kafka_group.command("fetch")
def kafka_fetch() -> None:
    """Download the broker's jars into the cache (once per Kafka version)."""
    from stream.kafka_local import KafkaToolError

    try:
        lib = _local_kafka().fetch()
    except KafkaToolError as error:
        _fail(str(error))
    out.print(f"kafka jars ready in {lib}")


@kafka_group.command("start")
def kafka_start() -> None:
    """Start the broker in the background and wait until it accepts clients."""
    from stream.kafka_local import KafkaToolError

    started = time.perf_counter()
    try:
        broker = _local_kafka()
        broker.start()
    except KafkaToolError as error:
        _fail(str(error))
    out.print(
        f"kafka ready on {broker.bootstrap} in {time.perf_counter() - started:.1f}s "
        f"(log: {broker.log_path}); use ENCORE_BROKER={broker.bootstrap}"
    )


@kafka_group.command("stop")
def kafka_stop() -> None:
    """Stop the broker started by ``encore kafka start``."""
    from stream.kafka_local import KafkaToolError

    try:
        was_running = _local_kafka().stop()
    except KafkaToolError as error:
        _fail(str(error))
    out.print("kafka stopped" if was_running else "kafka was not running")


@kafka_group.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs, and where. Exit code 1 when it does not."""
    status = _local_kafka().status()
    if status is None or not status.running:
        out.print("kafka: stopped")
        raise SystemExit(1)
    out.print(f"kafka: running, pid {status.pid}, {status.bootstrap}, version {status.version}")


# --------------------------------------------------------------------------- topics


@click.command("topics")
def topics_command() -> None:
    """Create Encore's topics (ENCORE_PARTITIONS partitions each) where missing."""
    from stream.topics import ensure_topics

    async def create() -> list[str]:
        return await ensure_topics(await _checked_settings())

    created = asyncio.run(create())
    out.print(f"created: {', '.join(created)}" if created else "all topics exist")


# --------------------------------------------------------------------------- simulate


async def _publish_simulation(
    world: Any,
    n_events: int,
    rate: float,
    live_time: bool,
    log_path: Path | None,
) -> tuple[dict[str, int], Counter[str]]:
    """Publish the catalog, then the events at ``rate`` per second (0 = as fast as possible).

    Returns the counts by message kind and the number of events per user.
    """
    from aiokafka import AIOKafkaProducer
    from rich.progress import Progress

    from stream.contracts import encode_catalog_item, encode_interaction
    from stream.topics import CATALOG, EVENT_TOPICS, ensure_topics

    settings = await _checked_settings()
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**settings.aiokafka_options(), linger_ms=5, acks="all")
    await producer.start()
    counts = {"catalog": 0, "play": 0, "skip": 0, "replay": 0}
    per_user: Counter[str] = Counter()
    log = log_path.open("wb") if log_path else None
    try:
        catalog_topic = settings.topic_name(CATALOG.base_name)
        for item in world.catalog:
            await producer.send(catalog_topic, encode_catalog_item(item), key=item.item_id.encode())
            counts["catalog"] += 1
        await producer.flush()
        started = time.perf_counter()
        run_id = uuid.uuid4().hex[:12]
        pending: list[asyncio.Future[Any]] = []
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task("events", total=n_events)
            for index, event in enumerate(world.events(n_events)):
                if live_time:
                    # a live run is new traffic: fresh ids, or a worker that saw an
                    # earlier run would drop these as duplicates
                    event = dataclasses.replace(
                        event, timestamp=time.time(), event_id=f"{run_id}-{event.event_id}"
                    )
                payload = encode_interaction(event)
                topic = settings.topic_name(EVENT_TOPICS[event.type].base_name)
                pending.append(await producer.send(topic, payload, key=event.user_id.encode()))
                if log:
                    log.write(payload + b"\n")
                counts[event.type.value] += 1
                per_user[event.user_id] += 1
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
                    progress.update(task, completed=index + 1)
                if rate > 0:
                    ahead = (index + 1) / rate - (time.perf_counter() - started)
                    if ahead > 0.002:
                        await asyncio.sleep(ahead)
            await asyncio.gather(*pending)
            progress.update(task, completed=n_events)
    finally:
        await producer.stop()
        if log:
            log.close()
    return counts, per_user


def _build_world(users: int, items: int, seed: int, *, live: bool) -> Any:
    """A simulated world; a live one ends its release window today, so new releases are new."""
    from stream.simulator import World, WorldConfig

    config = WorldConfig(n_users=users, n_items=items, seed=seed)
    if live:
        config = dataclasses.replace(
            config, start=time.time() - config.release_window_days * 86_400
        )
    return World.generate(config)


@click.command("simulate")
@_option("--users", env="ENCORE_SIM_USERS", default=2000, help="Simulated users.")
@_option("--items", env="ENCORE_SIM_ITEMS", default=5000, help="Catalog size.")
@_option("--events", "n_events", env="ENCORE_SIM_EVENTS", default=10_000, help="Events to make.")
@_option("--seed", env="ENCORE_SIM_SEED", default=0, help="Seed of the simulated world.")
@_option("--rate", env="ENCORE_SIM_RATE", default=1000.0, help="Events/s to publish; 0 = no limit.")
@_option(
    "--out",
    env="ENCORE_SIM_OUT",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write catalog.jsonl and events.jsonl into this directory.",
)
@_option(
    "--publish/--no-publish",
    env="ENCORE_SIM_PUBLISH",
    default=True,
    help="Publish to Kafka (ENCORE_BROKER); --no-publish only writes --out.",
)
def simulate_command(
    users: int, items: int, n_events: int, seed: int, rate: float, out: Path | None, publish: bool
) -> None:
    """Simulate listeners: publish a catalog and play/skip/replay events.

    Published events carry the current time (a live stream); files written with
    --no-publish keep the simulated timeline, for offline evaluation.
    """
    from stream.eventlog import write_catalog, write_events

    if not publish and out is None:
        _fail("--no-publish needs --out DIR: there would be nowhere to put the events")
    world = _build_world(users, items, seed, live=publish)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_catalog(out / "catalog.jsonl", world.catalog)
    if not publish:
        assert out is not None
        write_events(out / "events.jsonl", world.events(n_events))
        console.print(f"wrote {out / 'catalog.jsonl'} and {out / 'events.jsonl'}")
        return
    counts, _ = asyncio.run(
        _publish_simulation(
            world, n_events, rate, live_time=True, log_path=out / "events.jsonl" if out else None
        )
    )
    console.print(f"published {counts}")


# --------------------------------------------------------------------------- closed loop


async def _closed_loop(
    world: Any, warmup_events: int, rounds: int, round_pause: float, seed: int
) -> tuple[Any, dict | None]:
    """Warm the worker up, then let each simulated user pick from their lists, round by round."""
    import numpy as np
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from stream.closed_loop import ArmTally, pick_from_list
    from stream.contracts import decode_recommendation_list, encode_interaction
    from stream.topics import EVENT_TOPICS, RECOMMENDATIONS

    settings = await _checked_settings()
    counts, _ = await _publish_simulation(world, warmup_events, 0.0, live_time=True, log_path=None)
    console.print(f"warm-up published {counts}")
    consumer = AIOKafkaConsumer(
        settings.topic_name(RECOMMENDATIONS.base_name),
        **settings.aiokafka_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(**settings.aiokafka_options(), linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    known = set(world.user_ids)
    latest: dict[str, Any] = {}

    async def drain(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                for record in batch:
                    if record.value is None:
                        continue
                    rec = decode_recommendation_list(record.value)
                    if rec.user_id in known:
                        latest[rec.user_id] = rec

    try:
        # lists for the warm-up's users: until no new user shows up for 3 s (at most 120 s)
        started, seen = time.monotonic(), -1
        while len(latest) != seen and time.monotonic() - started < 120:
            seen = len(latest)
            await drain(3.0)
        console.print(f"lists for {len(latest)} of {len(known)} users")
        rng = np.random.default_rng(seed)
        devices = {profile.user_id: profile.device for profile in world.users}
        run_id = uuid.uuid4().hex[:8]
        tally = ArmTally()
        for round_number in range(rounds):
            for user_id in sorted(latest):
                rec = latest[user_id]
                picked = pick_from_list(world, rec, rng)
                if picked is None:
                    continue
                item_id, source = picked
                event = world.respond(
                    user_id, item_id, now=time.time(), device=devices[user_id], source=source
                )
                event = dataclasses.replace(event, event_id=f"{run_id}-{event.event_id}")
                topic = settings.topic_name(EVENT_TOPICS[event.type].base_name)
                await producer.send(topic, encode_interaction(event), key=user_id.encode())
                tally.add(rec.arm, event)
            await producer.flush()
            console.print(f"round {round_number + 1}/{rounds}: {dict(tally.picks)} picks")
            await drain(round_pause)  # the worker learns and republishes
    finally:
        await producer.stop()
        await consumer.stop()
    worker_stats = None
    try:
        import urllib.request

        url = f"http://127.0.0.1:{settings.web_port}/stats/"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our worker
            worker_stats = orjson.loads(response.read()).get("experiment")
    except OSError:
        pass
    return tally, worker_stats


@click.command("closed-loop")
@_option("--users", env="ENCORE_SIM_USERS", default=400, help="Simulated users.")
@_option("--items", env="ENCORE_SIM_ITEMS", default=2000, help="Catalog size.")
@_option("--seed", env="ENCORE_SIM_SEED", default=0, help="Seed of the world and of the picks.")
@_option(
    "--warmup-events",
    env="ENCORE_SIM_WARMUP_EVENTS",
    default=20_000,
    help="Background events published first, so the engine knows the users.",
)
@_option("--rounds", env="ENCORE_SIM_ROUNDS", default=10, help="Picks per user.")
@_option(
    "--round-pause",
    env="ENCORE_SIM_ROUND_PAUSE",
    default=1.0,
    help="Seconds between rounds, for the worker to republish lists.",
)
@_option("--json", "as_json", env="ENCORE_SIM_JSON", is_flag=True, default=False)
def closed_loop_command(
    users: int,
    items: int,
    seed: int,
    warmup_events: int,
    rounds: int,
    round_pause: float,
    as_json: bool,
) -> None:
    """Closed loop against a running worker: simulated users pick from their published lists.

    Each pick (true taste x position bias) is answered by the world with a play or a
    skip carrying source = the list, row and slot; play-through rates are printed per
    experiment arm (set ENCORE_HOLDOUT_SHARE on the worker). Use a fresh
    ENCORE_TOPIC_PREFIX, or earlier runs' lists and events mix in.
    """
    from rich.table import Table

    world = _build_world(users, items, seed, live=True)
    tally, worker_stats = asyncio.run(_closed_loop(world, warmup_events, rounds, round_pause, seed))
    result = {"arms": tally.as_dict(), "lift": tally.lift(), "worker": worker_stats}
    if as_json:
        out.print_json(orjson.dumps(result).decode())
        return
    table = Table(title="closed loop: simulated users' responses to their lists")
    for column in ("arm", "users", "picks", "plays", "skips", "play-through", "skip rate"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm, row in result["arms"].items():
        table.add_row(
            arm,
            str(row["users"]),
            str(row["picks"]),
            str(row["plays"]),
            str(row["skips"]),
            f"{row['play_through_rate']:.3f}",
            f"{row['skip_rate']:.3f}",
        )
    out.print(table)
    lift = result["lift"]
    out.print(
        "play-through lift, personalised over holdout: "
        + ("n/a (an arm is empty)" if lift is None else f"{lift:+.1%}")
    )
    if worker_stats:
        for arm, row in worker_stats.get("arms", {}).items():
            out.print(
                f"worker's count, {arm}: {row['attributed_events']} attributed events, "
                f"play-through {row['play_through_rate']}, skip rate {row['skip_rate']}"
            )


# --------------------------------------------------------------------------- tail


def render_list(recommendations: Any, max_per_row: int | None = None) -> Any:
    """A rich renderable of one recommendation list: one table, a section per row."""
    from rich.table import Table

    from stream.contracts import format_time

    table = Table(
        title=(
            f"{recommendations.user_id} · {recommendations.arm} · "
            f"{recommendations.based_on_events} events · "
            f"{format_time(recommendations.generated_at)}"
        ),
        show_lines=False,
        title_justify="left",
    )
    table.add_column("row")
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    table.add_column("why")
    for row in recommendations.rows:
        for position, item in enumerate(row.items[:max_per_row]):
            table.add_row(
                row.title if position == 0 else "",
                str(position + 1),
                item.item_id,
                f"{item.score:.3f}",
                item.reason,
            )
        table.add_section()
    if not any(row.items for row in recommendations.rows):
        table.add_row("", "", "(nothing to recommend yet)", "", "")
    return table


def render_message(topic: str, key: bytes | None, value: bytes | None) -> Any:
    """Readable form of a message of any Encore topic."""
    from stream.contracts import decode_recommendation_list

    shown_key = key.decode("utf-8", "replace") if key else None
    if value is None:
        return f"[bold]{shown_key}[/]: (tombstone)"
    if topic.endswith("recommendations"):
        try:
            return render_list(decode_recommendation_list(value))
        except Exception as error:  # noqa: BLE001 - show what is there rather than die
            return f"[red]undecodable list for {shown_key}: {error}[/]"
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return f"{shown_key}: {value[:200]!r}"
    if topic.endswith("dead-letters"):
        return (
            f"[red]{doc.get('reason')}[/] {doc.get('topic')}[{doc.get('partition')}]"
            f"@{doc.get('offset')}: {doc.get('detail')}"
        )
    return f"{shown_key}: {orjson.dumps(doc).decode()}"


async def _tail(
    topic: str, user: str | None, from_beginning: bool, max_messages: int, timeout: float
) -> int:
    from aiokafka import AIOKafkaConsumer

    settings = await _checked_settings()
    name = settings.topic_name(topic)
    # No group: every partition is ours, nothing is committed, nobody else is disturbed.
    consumer = AIOKafkaConsumer(
        name,
        **settings.aiokafka_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    shown = 0
    try:
        if name not in await consumer.topics():
            await consumer.stop()
            _fail(f"topic {name!r} does not exist on {settings.bootstrap_servers}")
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while max_messages <= 0 or shown < max_messages:
            if deadline is not None and time.monotonic() > deadline:
                break
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if user is not None and (record.key or b"").decode("utf-8", "replace") != user:
                        continue
                    out.print(render_message(name, record.key, record.value))
                    shown += 1
                    if 0 < max_messages <= shown:
                        return shown
    finally:
        await consumer.stop()
    return shown


@click.command("tail")
@click.argument("topic", default="recommendations")
@_option("--user", env="ENCORE_TAIL_USER", default=None, help="Only messages keyed by this user.")
@_option(
    "--from-beginning/--new-only",
    env="ENCORE_TAIL_FROM_BEGINNING",
    default=False,
    help="Start at the oldest message instead of waiting for new ones.",
)
@_option(
    "--max", "max_messages", env="ENCORE_TAIL_MAX", default=0, help="Stop after N (0 = no limit)."
)
@_option(
    "--timeout", env="ENCORE_TAIL_TIMEOUT", default=0.0, help="Stop after S seconds (0 = never)."
)
def tail_command(
    topic: str, user: str | None, from_beginning: bool, max_messages: int, timeout: float
) -> None:
    """Watch a topic in readable form (default: recommendations).

    TOPIC is the base name (recommendations, dead-letters, plays, skips, replays,
    catalog, deletions); ENCORE_TOPIC_PREFIX is added.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(topic, user, from_beginning, max_messages, timeout))


# --------------------------------------------------------------------------- evaluate


@click.command("evaluate")
@click.argument("log", type=click.Path(exists=True, dir_okay=True, path_type=Path))
@_option(
    "--catalog",
    env="ENCORE_EVAL_CATALOG",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Catalog JSONL (default: catalog.jsonl beside the log, if there).",
)
@_option(
    "--model",
    "models",
    env="ENCORE_EVAL_MODELS",
    default="engine,popularity,river-mf",
    help="Comma-separated: engine, popularity, river-mf.",
)
@_option("--k", env="ENCORE_EVAL_K", default=10, help="Cut-off of recall@k / NDCG@k.")
@_option(
    "--limit", env="ENCORE_EVAL_LIMIT", default=None, type=int, help="Only the first N events."
)
@_option("--seed", env="ENCORE_SEED", default=0, help="Seed of the models.")
@_option(
    "--processes",
    env="ENCORE_EVAL_PROCESSES",
    default=1,
    type=click.IntRange(min=1),
    help="Split the engine by user over N processes that exchange item updates, as N "
    "workers do (models that cannot share item state run in one process).",
)
@_option(
    "--sync-every",
    env="ENCORE_EVAL_SYNC_EVERY",
    default=2000,
    type=click.IntRange(min=1),
    help="With --processes > 1: events between two exchanges of item updates.",
)
@_option(
    "--json", "as_json", env="ENCORE_EVAL_JSON", is_flag=True, help="Print JSON instead of a table."
)
def evaluate_command(
    log: Path,
    catalog: Path | None,
    models: str,
    k: int,
    limit: int | None,
    seed: int,
    processes: int,
    sync_every: int,
    as_json: bool,
) -> None:
    """Prequential (test-then-learn) evaluation over a time-ordered event log.

    LOG is a JSONL event log (as written by `encore simulate --out`), a directory
    holding events.jsonl (and catalog.jsonl), or a CSV of user,item,timestamp[,rating].

    With --processes N the engine is evaluated as N workers would run it: each
    process tests and learns its users' events and they exchange item updates
    every --sync-every events, so the figures can differ slightly from one
    process's (see stream/parallel_evaluation.py).
    """
    from stream.evaluation import make_model, report_table
    from stream.eventlog import EventLogError, read_catalog, read_events, sorted_by_time
    from stream.parallel_evaluation import can_share_items, evaluate_in_processes

    if log.is_dir():
        catalog = catalog or (log / "catalog.jsonl" if (log / "catalog.jsonl").exists() else None)
        log = log / "events.jsonl"
    elif catalog is None and (log.parent / "catalog.jsonl").exists() and log.suffix == ".jsonl":
        catalog = log.parent / "catalog.jsonl"
    names = [name.strip() for name in models.split(",") if name.strip()]
    reports = []
    try:
        items = read_catalog(catalog) if catalog else None
        for name in names:
            try:
                model = make_model(name, seed=seed)
            except (KeyError, ValueError) as error:
                _fail(f"--model: {error}")
            split = processes
            if processes > 1 and not can_share_items(model):
                split = 1
                console.print(f"{name}: in one process (it cannot share item updates)")
            # prequential evaluation needs time order; outside logs are not always sorted
            events = sorted_by_time(read_events(log))
            reports.append(
                evaluate_in_processes(
                    events,
                    model,
                    processes=split,
                    sync_every=sync_every,
                    catalog=items,
                    k=k,
                    progress=not as_json,
                    limit=limit,
                    name=name,
                )
            )
    except EventLogError as error:
        _fail(str(error))
    if as_json:
        out.print_json(orjson.dumps([report.to_dict() for report in reports]).decode())
    else:
        out.print(report_table(reports))


# --------------------------------------------------------------------------- demo


async def _collect_lists(users: set[str], timeout: float) -> dict[str, Any]:
    """Read ``recommendations`` from the start until every user in ``users`` has a list."""
    from aiokafka import AIOKafkaConsumer

    from stream.contracts import decode_recommendation_list

    settings = get_settings()
    consumer = AIOKafkaConsumer(
        settings.topic_name("recommendations"),
        **settings.aiokafka_options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    latest: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not users <= latest.keys():
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    if record.value is not None:
                        rec = decode_recommendation_list(record.value)
                        latest[rec.user_id] = rec
    finally:
        await consumer.stop()
    return latest


@click.command("demo")
@_option("--events", "n_events", env="ENCORE_DEMO_EVENTS", default=5000, help="Events to stream.")
@_option("--rate", env="ENCORE_DEMO_RATE", default=2500.0, help="Events/s.")
@_option("--show", env="ENCORE_DEMO_SHOW", default=3, help="How many users' lists to print.")
@_option("--seed", env="ENCORE_SIM_SEED", default=0, help="Seed of the simulated world.")
def demo_command(n_events: int, rate: float, show: int, seed: int) -> None:
    """Everything at once: Kafka, topics, a worker, simulated listeners, live lists."""
    from stream.kafka_local import KafkaToolError
    from stream.processes import WorkerFailed, free_port, running_worker

    root = Path(".encore/demo").resolve()
    broker = _local_kafka(port=0, home=root / "kafka")
    console.rule("[bold]Encore demo")
    try:
        started = time.perf_counter()
        broker.start(fresh=True)
    except KafkaToolError as error:
        _fail(str(error))
    console.print(f"kafka ready on {broker.bootstrap} in {time.perf_counter() - started:.1f}s")
    env = {
        "ENCORE_BROKER": broker.bootstrap,
        "ENCORE_DATA_DIR": str(root / "data"),
        "ENCORE_WEB_PORT": str(free_port()),
    }
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        from stream.topics import ensure_topics

        asyncio.run(ensure_topics(get_settings()))
        with running_worker(env, root / "worker.log"):
            console.print(f"worker ready (log: {root / 'worker.log'})")
            world = _build_world(users=500, items=2000, seed=seed, live=True)
            published_at = time.perf_counter()
            counts, per_user = asyncio.run(
                _publish_simulation(world, n_events, rate, live_time=True, log_path=None)
            )
            console.print(f"published {counts}")
            active = [user for user, _ in per_user.most_common(show)]
            lists = asyncio.run(_collect_lists(set(active), timeout=30))
            console.print(
                f"lists for {len(lists)} users within {time.perf_counter() - published_at:.1f}s "
                "of the first event"
            )
            for user_id in active:
                if user_id in lists:
                    out.print(render_list(lists[user_id], max_per_row=5))
            missing = [user for user in active if user not in lists]
            if missing:
                _fail(f"no list published for {missing}; see {root / 'worker.log'}")
    except WorkerFailed as error:
        _fail(str(error))
    finally:
        broker.stop()
        console.print("kafka stopped")


# --------------------------------------------------------------------------- registry


def register_commands() -> None:
    """Add the project's commands to Faust's command group (called by ``main``)."""
    from faust.cli.base import cli

    for command in (
        kafka_group,
        topics_command,
        simulate_command,
        closed_loop_command,
        tail_command,
        evaluate_command,
        demo_command,
    ):
        cli.add_command(command)
