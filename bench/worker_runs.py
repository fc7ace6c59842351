"""Encore's worker under load: a backlog, paced runs with freshness, and memory.

Each measurement drives a real ``encore worker`` subprocess (see
:mod:`stream.processes`) through Kafka and reads what it did from its
``GET /stats/`` counters and from the ``recommendations`` topic -- the same
way a downstream app would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import (
    BenchTopics,
    MachineCpu,
    Message,
    cpu_seconds,
    event_payload,
    fetch_worker_stats,
    per_second,
    percentiles,
    rss_kib,
)
from stream.allocator import TRIM_INTERVAL_SECONDS
from stream.contracts import encode_catalog_item, format_time
from stream.models import CatalogItem, Interaction
from stream.processes import free_port, running_worker

#: How often /stats/ is polled while waiting: fine enough for runs of seconds, cheap for the worker.
POLL_SECONDS = 0.05
#: A list count unchanged for this long (and nobody waiting) means the publisher is idle.
QUIET_SECONDS = 0.3


class WorkerRunFailed(RuntimeError):
    """The worker did not reach the expected state in time; the message says how far it got."""


@dataclass
class RunningEncore:
    """A ready ``encore worker`` subprocess and how to reach it."""

    pid: int
    web_port: int
    log_path: Path
    stats_session: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def stats(self) -> dict[str, Any]:
        if self.stats_session is None:
            self.stats_session = aiohttp.ClientSession()
        return await fetch_worker_stats(self.stats_session, self.web_port)

    async def close(self) -> None:
        if self.stats_session is not None:
            await self.stats_session.close()
            self.stats_session = None

    async def wait_until(
        self,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str,
        on_sample: Callable[[float, dict[str, Any]], None] | None = None,
    ) -> tuple[float, dict[str, Any]]:
        """Poll /stats/ until ``done(stats)``; returns (monotonic time, stats) of that poll."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            now = time.monotonic()
            if on_sample is not None:
                on_sample(now, stats)
            if done(stats):
                return now, stats
            if now > deadline:
                raise WorkerRunFailed(
                    f"worker not {what} after {timeout:.0f}s; last stats {stats}; "
                    f"log: {self.log_path}"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def wait_until_lists_drained(self, timeout: float) -> tuple[float, dict[str, Any]]:
        """Wait until no user waits for a list and the publisher has been quiet for a while.

        ``users_waiting_for_a_list`` drops to 0 as soon as a publishing tick takes its
        users, before their lists are sent, so a steady ``lists_published`` is needed too.
        Returns the time the final list count was first seen.
        """
        last_count, changed_at = -1, time.monotonic()

        def quiet(stats: dict[str, Any]) -> bool:
            nonlocal last_count, changed_at
            now = time.monotonic()
            # Background re-ranks (after quick lists) answer no new event: not counted.
            count = stats["lists_published"] - stats.get("lists_reranked", 0)
            if count != last_count:
                last_count, changed_at = count, now
            return stats["users_waiting_for_a_list"] == 0 and now - changed_at >= QUIET_SECONDS

        _, stats = await self.wait_until(quiet, timeout, "done publishing")
        return changed_at, stats


def _handled(stats: dict[str, Any]) -> int:
    """Events the worker is done with: accepted or dead-lettered."""
    return int(stats["events_accepted"] + sum(stats["rejected_by_reason"].values()))


@contextlib.contextmanager
def encore_worker(
    bootstrap: str,
    topics: BenchTopics,
    partitions: int,
    work_dir: Path,
    name: str,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningEncore]:
    """A fresh worker (own consumer group and data dir) on ``topics``, stopped afterwards."""
    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        "ENCORE_BROKER": bootstrap,
        "ENCORE_TOPIC_PREFIX": topics.prefix,
        "ENCORE_APP_ID": f"bench-{run_id}",
        "ENCORE_PARTITIONS": str(partitions),
        "ENCORE_DATA_DIR": str(work_dir / f"worker-data-{run_id}"),
        "ENCORE_WEB_PORT": str(port),
        "ENCORE_WEB_ENABLED": "true",
        **(extra_env or {}),
    }
    log_path = work_dir / f"worker-{run_id}.log"
    with running_worker(env, log_path, timeout=120.0) as process:
        yield RunningEncore(pid=process.pid, web_port=port, log_path=log_path)


# --------------------------------------------------------------------------- backlog


async def measure_backlog(
    worker: RunningEncore, expected_events: int, catalog_items: int, time_limit: float
) -> dict[str, Any]:
    """Time a fresh worker through the pre-produced backlog: events accepted, then lists.

    The clock starts at the first poll that sees an accepted event (start-up is left
    out, as in the ceilings) and stops at the worker's own ``last_event_processed_at``
    for ingest, and when publishing went quiet for end to end. The catalog is read
    concurrently, as after a restart. A worker too slow to finish within
    ``time_limit`` is measured over what it did (``complete`` is then false and
    there is no end-to-end figure): a sustained rate needs seconds, not the whole
    backlog, and the benchmark must stay within minutes.
    """
    first: dict[str, float] = {}
    machine_at_first: list[MachineCpu] = []

    def note_first_event(now: float, stats: dict[str, Any]) -> None:
        if stats["events_accepted"] and not first:
            first.update(
                at=now,
                wall=time.time(),
                cpu=cpu_seconds(worker.pid),
                accepted=stats["events_accepted"],
            )
            machine_at_first.append(MachineCpu.read())

    deadline = time.monotonic() + time_limit
    try:
        accepted_at, stats = await worker.wait_until(
            lambda stats: _handled(stats) >= expected_events,
            time_limit,
            "through the backlog",
            on_sample=note_first_event,
        )
        complete = True
    except WorkerRunFailed:
        accepted_at, stats, complete = time.monotonic(), await worker.stats(), False
    if not first:
        raise WorkerRunFailed(f"the worker accepted no event in {time_limit:.0f}s")
    cpu_at_accepted = cpu_seconds(worker.pid)
    # The worker stamps its last event with its wall clock: more exact than the poll.
    ingest_end_wall = stats["last_event_processed_at"] or time.time()
    ingest_seconds = ingest_end_wall - first["wall"]
    counted = stats["events_accepted"] - first["accepted"]  # accepted inside the window
    result: dict[str, Any] = {
        "events": expected_events,
        "catalog_items": catalog_items,
        "complete": complete,
        "events_accepted": stats["events_accepted"],
        "ingest_seconds": round(ingest_seconds, 3),
        "ingest_events_per_second": per_second(counted, ingest_seconds),
        "cpu_us_per_event_ingest": round(
            (cpu_at_accepted - first["cpu"]) / max(1, counted) * 1e6, 1
        ),
        "end_to_end_seconds": None,
        "end_to_end_events_per_second": None,
        "list_backlog_drain_seconds": None,
        "users_waiting_for_a_list_at_stop": stats["users_waiting_for_a_list"],
    }
    if complete:
        drained_at, stats = await worker.wait_until_lists_drained(
            max(10.0, deadline - time.monotonic())
        )
        end_to_end_seconds = drained_at - first["at"]
        result.update(
            end_to_end_seconds=round(end_to_end_seconds, 3),
            end_to_end_events_per_second=per_second(counted, end_to_end_seconds),
            list_backlog_drain_seconds=round(max(0.0, drained_at - accepted_at), 3),
            users_waiting_for_a_list_at_stop=stats["users_waiting_for_a_list"],
        )
    cpu_now, window = cpu_seconds(worker.pid), time.monotonic() - first["at"]
    result.update(
        lists_published=stats["lists_published"],
        lists_quick=stats.get("lists_quick", 0),
        lists_reranked=stats.get("lists_reranked", 0),
        events_per_list=round(stats["events_accepted"] / max(1, stats["lists_published"]), 2),
        rejected=stats["rejected_by_reason"],
        cpu_share_of_one_core=round((cpu_now - first["cpu"]) / max(1e-9, window), 2),
        machine_idle_share=MachineCpu.read().idle_share_since(machine_at_first[0]),
        rss_mib_after=round(rss_kib(worker.pid) / 1024, 1),
    )
    return result


async def warm_up(
    worker: RunningEncore, expected_events: int, catalog_items: int, timeout: float
) -> dict[str, Any]:
    """Wait until a fresh worker read the catalog, learned its warm-up events and published."""
    started = time.monotonic()
    await worker.wait_until(
        lambda stats: (
            _handled(stats) >= expected_events
            and stats["catalog_messages_applied"] >= catalog_items
        ),
        timeout,
        "warmed up",
    )
    _, stats = await worker.wait_until_lists_drained(timeout)
    return {
        "events": expected_events,
        "seconds": round(time.monotonic() - started, 1),
        "lists_published": stats["lists_published"],
    }


# --------------------------------------------------------------------------- paced runs


@dataclass
class _PacedLog:
    """What a paced run records while it runs; analysed afterwards, off the clock."""

    produced_at: dict[str, float] = field(default_factory=dict)  # event_id -> wall time sent
    user_events: dict[str, list[str]] = field(default_factory=dict)  # user -> ids in send order
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)  # (wall time, list bytes)
    max_behind_seconds: float = 0.0
    first_sent_at: float = 0.0
    last_sent_at: float = 0.0


async def _open_list_reader(bootstrap: str, topic: str, partitions: int) -> AIOKafkaConsumer:
    """A consumer on every partition of ``topic``, positioned at its end (only new lists)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    assigned = [TopicPartition(topic, partition) for partition in range(partitions)]
    consumer.assign(assigned)
    await consumer.seek_to_end(*assigned)
    for partition in assigned:
        await consumer.position(partition)  # resolve "end" now, before anything is produced
    return consumer


async def _read_lists(consumer: AIOKafkaConsumer, log: _PacedLog, stop: asyncio.Event) -> None:
    # Only the arrival time and raw bytes: decoding here would steal CPU from the worker.
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=50)
        arrived_at = time.time()
        for records in batches.values():
            log.arrivals.extend((arrived_at, record.value) for record in records)


async def _produce_paced(
    producer: AIOKafkaProducer,
    topics: BenchTopics,
    events: list[Interaction],
    rate: float,
    tag: str,
    log: _PacedLog,
) -> None:
    """Send ``events`` at ``rate`` per second; each gets a fresh id and ``occurred_at`` = now."""
    started = time.perf_counter()
    log.first_sent_at = time.time()
    for index, event in enumerate(events):
        due = started + index / rate
        ahead = due - time.perf_counter()
        if ahead > 0.002:
            await asyncio.sleep(ahead)  # bursts of at most 2 ms of events: a steady stream
        elif index % 64 == 0:
            await asyncio.sleep(0)  # let the list reader run even when behind schedule
        log.max_behind_seconds = max(log.max_behind_seconds, time.perf_counter() - due)
        event_id = f"{tag}-{index:08d}"
        sent_at = time.time()
        log.produced_at[event_id] = sent_at
        log.user_events.setdefault(event.user_id, []).append(event_id)
        await producer.send(
            topics.for_event_type(event.type),
            event_payload(event, event_id=event_id, occurred_at=sent_at),
            key=event.user_id.encode(),
        )
    log.last_sent_at = time.time()
    await producer.flush()


def _analyse_paced(log: _PacedLog, prior_events: Mapping[str, int]) -> dict[str, Any]:
    """Freshness of each list, and which events a list came to reflect, from the records.

    A list reflects the first ``based_on_events - prior_events[user]`` events of its
    user in this run (counted in send order). Counting rather than following
    ``last_event_id`` because plays, skips and replays travel on different topics and
    may be learned out of send order; once the worker has caught up, its last list
    per user accounts for every event.
    """
    freshness: list[float] = []
    older_lists = 0
    reranked = 0
    newest_seen: set[str] = set()  # last_event_ids a list already reflected
    covered: dict[str, int] = {}  # user -> how many of this run's events a list reflected
    event_to_list: list[float] = []
    for arrived_at, value in log.arrivals:  # in arrival order
        doc = orjson.loads(value)
        last_event_id = doc.get("last_event_id")
        if last_event_id in newest_seen:
            reranked += 1  # the same events ranked again (after a quick list): not fresher
        elif last_event_id in log.produced_at:
            freshness.append(arrived_at - log.produced_at[last_event_id])
            newest_seen.add(last_event_id)
        else:
            older_lists += 1  # its newest event is from before this run
        user = doc["user_id"]
        ids = log.user_events.get(user, [])
        reflected = min(len(ids), doc["based_on_events"] - prior_events.get(user, 0))
        for event_id in ids[covered.get(user, 0) : reflected]:
            event_to_list.append(arrived_at - log.produced_at[event_id])
        covered[user] = max(covered.get(user, 0), reflected)
    produced = len(log.produced_at)
    return {
        "lists_received": len(log.arrivals),
        "lists_about_this_run": len(freshness),
        "lists_about_earlier_events": older_lists,
        "lists_reranked": reranked,
        "freshness_ms": percentiles(freshness),
        "events_reflected_share": round(len(event_to_list) / produced, 4) if produced else None,
        "event_to_first_list_ms": percentiles(event_to_list),
        "users": len(log.user_events),
    }


def paced_producer(bootstrap: str) -> AIOKafkaProducer:
    """The producer of the paced runs and of the round-trip probe.

    A small linger, as an upstream app would use: it is part of the measured freshness.
    """
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)


async def measure_round_trip(
    bootstrap: str, topic: str, partitions: int, count: int = 300, rate: float = 200.0
) -> dict[str, Any]:
    """Produce -> readable latency of Kafka itself, with the paced runs' producer and reader.

    The floor under every freshness figure: what a list would cost if the worker
    took no time at all. ``topic`` must exist and be used by nothing else.
    """
    reader = await _open_list_reader(bootstrap, topic, partitions)
    producer = paced_producer(bootstrap)
    await producer.start()
    log = _PacedLog()
    stop_reading = asyncio.Event()
    reading = asyncio.create_task(_read_lists(reader, log, stop_reading))
    try:
        for number in range(count):
            sent_at = time.time()
            await producer.send(topic, orjson.dumps([number, sent_at]), key=b"probe-%d" % number)
            await asyncio.sleep(1.0 / rate)
        await producer.flush()
        deadline = time.monotonic() + 10.0
        while len(log.arrivals) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop_reading.set()
        await reading
        await producer.stop()
        await reader.stop()
    round_trips = [arrived_at - orjson.loads(value)[1] for arrived_at, value in log.arrivals]
    return {"messages": count, "received": len(round_trips), "ms": percentiles(round_trips)}


async def paced_run(
    bootstrap: str,
    topics: BenchTopics,
    partitions: int,
    worker: RunningEncore,
    events: list[Interaction],
    rate: float,
    tag: str,
    drain_timeout: float,
    events_produced_before: int,
    prior_events: Mapping[str, int],
) -> dict[str, Any]:
    """Produce ``events`` at ``rate``/s into a warm worker; freshness of the lists it publishes.

    Freshness of a list = when it was readable on ``recommendations`` minus when
    its ``last_event_id`` was handed to the producer (same clock, same process).
    ``events_produced_before`` (all events ever produced to the worker's topics)
    tells whether the worker still had a backlog when the run started;
    ``prior_events`` (user -> events produced for them before) which events a list
    already accounted for.
    """
    log = _PacedLog()
    reader = await _open_list_reader(bootstrap, topics.recommendations, partitions)
    producer = paced_producer(bootstrap)
    await producer.start()
    stop_reading = asyncio.Event()
    reading = asyncio.create_task(_read_lists(reader, log, stop_reading))
    try:
        before = await worker.stats()
        cpu_before, machine_before = cpu_seconds(worker.pid), MachineCpu.read()
        own_cpu_before = time.process_time()
        backlog_at_start = events_produced_before - _handled(before)
        production_start = time.monotonic()
        await _produce_paced(producer, topics, events, rate, tag, log)
        production_end = time.monotonic()
        at_end = await worker.stats()
        all_produced = events_produced_before + len(events)
        try:
            await worker.wait_until(
                lambda stats: _handled(stats) >= all_produced, drain_timeout, "caught up"
            )
            remaining = max(1.0, drain_timeout - (time.monotonic() - production_end))
            drained_at, final = await worker.wait_until_lists_drained(remaining)
            caught_up = True
            await asyncio.sleep(0.5)  # the last lists may still be on their way to the reader
        except WorkerRunFailed:
            drained_at, final, caught_up = time.monotonic(), await worker.stats(), False
        cpu_after, machine_after = cpu_seconds(worker.pid), MachineCpu.read()
        own_cpu = time.process_time() - own_cpu_before
    finally:
        stop_reading.set()
        await reading
        await producer.stop()
        await reader.stop()

    production_seconds = log.last_sent_at - log.first_sent_at
    achieved = per_second(len(events), production_seconds)
    busy_seconds = drained_at - production_start
    result = {
        "target_events_per_second": round(rate, 1),
        "events_produced": len(events),
        "production_seconds": round(production_seconds, 3),
        "achieved_events_per_second": achieved,
        "producer_max_behind_schedule_ms": round(log.max_behind_seconds * 1000, 1),
        # 2% slack and a short hiccup are fine; a producer that fell behind measured less load.
        "producer_kept_pace": bool(
            achieved is not None and achieved >= 0.98 * rate and log.max_behind_seconds < 0.5
        ),
        "worker_backlog_at_start": backlog_at_start,
        "worker_backlog_at_production_end": all_produced - _handled(at_end),
        "worker_caught_up": caught_up,
        "worker_backlog_at_stop": all_produced - _handled(final),
        # Until caught up, or until the drain timeout when it never did.
        "seconds_after_production": round(drained_at - production_end, 3),
        "worker_events_per_second": per_second(_handled(final) - _handled(before), busy_seconds),
        "worker_lists_published": final["lists_published"] - before["lists_published"],
        "worker_lists_quick": final.get("lists_quick", 0) - before.get("lists_quick", 0),
        "worker_lists_reranked": final.get("lists_reranked", 0) - before.get("lists_reranked", 0),
        "worker_events_per_list": round(
            len(events) / max(1, final["lists_published"] - before["lists_published"]), 2
        ),
        "worker_cpu_share_of_one_core": round((cpu_after - cpu_before) / busy_seconds, 2),
        # The producer and list reader share the machine with the worker and the broker.
        "load_generator_cpu_share_of_one_core": round(own_cpu / busy_seconds, 2),
        "machine_idle_share": machine_after.idle_share_since(machine_before),
    }
    result.update(_analyse_paced(log, prior_events))
    return result


# --------------------------------------------------------------------------- memory


#: Items each listener of :func:`item_play_events` plays.
ITEMS_PER_WARMING_LISTENER = 500


def _listening_message(
    topics: BenchTopics,
    event_id: str,
    user_id: str,
    item: CatalogItem,
    is_skip: bool,
    occurred_at: float,
) -> Message:
    """One play (in full) or skip (a tenth heard) of ``item``, on a phone in GB."""
    doc = {
        "event_id": event_id,
        "type": "skip" if is_skip else "play",
        "user_id": user_id,
        "item_id": item.item_id,
        "occurred_at": format_time(occurred_at),
        "ms_played": item.duration_ms // 10 if is_skip else item.duration_ms,
        "duration_ms": item.duration_ms,
        "device": "mobile",
        "country": "GB",
    }
    topic = topics.name("skips" if is_skip else "plays")
    return topic, user_id.encode(), orjson.dumps(doc)


def item_play_events(
    topics: BenchTopics, items: list[CatalogItem], now: float, first_number: int = 0
) -> list[Message]:
    """One full play of every item, spread over a few listeners (one per
    :data:`ITEMS_PER_WARMING_LISTENER` items): what an item costs once it has been played
    -- its MF factors, co-occurrence and popularity -- not only its catalog entry.

    Events and listeners are numbered from ``first_number`` (the items of earlier steps).
    """
    span = 3600.0
    return [
        _listening_message(
            topics,
            f"mem-warm-{first_number + number:09d}",
            f"mem-warm-{(first_number + number) // ITEMS_PER_WARMING_LISTENER:05d}",
            item,
            False,
            now - 2 * span + span * number / len(items),
        )
        for number, item in enumerate(items)
    ]


def memory_events(
    topics: BenchTopics,
    n_users: int,
    items: list[CatalogItem],
    events_per_user: int,
    seed: int,
    now: float,
    first_user: int = 0,
) -> list[Message]:
    """Events touching ``n_users`` new users (numbered from ``first_user``): Zipf-popular
    items, mostly plays, some skips.

    Synthetic rather than simulated: the simulator spends ~0.2 ms per user just
    building its world, and memory only needs every user to exist with a history.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, len(items) + 1)
    n_events = n_users * events_per_user
    picks = rng.choice(len(items), size=n_events, p=popularity / popularity.sum())
    skipped = rng.random(n_events) < 0.3
    span = 24 * 3600.0  # the histories end a minute ago and span a day
    return [
        _listening_message(
            topics,
            f"mem-{first_user:07d}-{number:09d}",
            f"mem-u-{first_user + number % n_users:07d}",
            items[int(picks[number])],
            bool(skipped[number]),
            now - 60 - span + span * number / n_events,
        )
        for number in range(n_events)
    ]


@dataclass(frozen=True)
class ItemStep:
    """One step of the memory run's items: produce their catalog entries, then one play
    of each (:func:`item_play_events`)."""

    n_items: int
    load_catalog: Callable[[], Awaitable[None]]
    load_plays: Callable[[], Awaitable[None]]


async def measure_memory(
    worker: RunningEncore,
    item_steps: Sequence[ItemStep],
    load_users: Sequence[Callable[[], Awaitable[None]]],
    users_per_step: Sequence[int],
    events_per_step: Sequence[int],
    timeout: float,
    lists_deferred: bool,
) -> dict[str, Any]:
    """RSS of a fresh worker: at rest, then after each step of items (their catalog
    entries, then one play of each), then after each step of new users.

    Per item, two figures: the catalog's growth (an item never played), and that plus
    the growth from one play of each item (an item that has been played: what a
    catalog in service costs). Each is given twice: the cost beyond the fixed base and
    the average since the base. The first step pays the fixed base (the buffers,
    bounded caches and rings the first messages fill, and allocator arenas that the
    first batches' short-lived objects leave behind). Beyond it, the cost of a played
    item is the least-squares slope of RSS after each step's plays over the items so
    far (one reading off by a transient buffer moves a slope over several steps less
    than a difference of two readings); the catalog's is the mean growth of the later
    catalog steps. Per user: the growth during the last step over its users, and the
    average. With ``lists_deferred`` the worker was started with a publishing interval
    longer than the run, so no list is waited for.
    """
    await asyncio.sleep(2.0)  # let start-up allocations settle before the base reading
    base = rss_kib(worker.pid)

    async def settled_rss_after(load: Callable[[], Awaitable[None]], events: int) -> int:
        """RSS once ``load``'s events are learned (``events`` in all so far) and the worker
        settled: at least one of its periodic allocator trims ran since the last event (it
        hands freed fetch buffers back to the OS, as it would in service)."""
        await load()
        await worker.wait_until(
            lambda stats: stats["events_accepted"] >= events, timeout, "through the events"
        )
        if not lists_deferred:
            await worker.wait_until_lists_drained(timeout)
        await asyncio.sleep(TRIM_INTERVAL_SECONDS + 1.0)
        return rss_kib(worker.pid)

    started = time.monotonic()
    items_so_far = events_so_far = 0
    readings = [base]  # after each catalog step and each item-play step, in turn
    for step in item_steps:
        items_so_far += step.n_items
        await step.load_catalog()
        await worker.wait_until(
            lambda stats, n=items_so_far: stats["catalog_messages_applied"] >= n,
            timeout,
            "done with the catalog",
        )
        await asyncio.sleep(TRIM_INTERVAL_SECONDS + 1.0)
        readings.append(rss_kib(worker.pid))
        events_so_far += step.n_items
        readings.append(await settled_rss_after(step.load_plays, events_so_far))
    after_item_plays = readings[-1]
    after_steps: list[int] = []
    for load, n_events in zip(load_users, events_per_step, strict=True):
        events_so_far += n_events
        after_steps.append(await settled_rss_after(load, events_so_far))
    seconds = time.monotonic() - started
    stats = await worker.stats()
    n_users = sum(users_per_step)
    cumulative = np.cumsum([step.n_items for step in item_steps])
    after_plays = readings[2::2]
    later = range(1, len(item_steps))  # the steps after the first, which paid the fixed base
    catalog_growth = sum(readings[2 * k + 1] - readings[2 * k] for k in later)
    before_last = after_steps[-2] if len(after_steps) > 1 else after_item_plays
    return {
        "items": items_so_far,
        "users": n_users,
        "events": events_so_far,
        "items_per_step": [step.n_items for step in item_steps],
        "users_per_step": list(users_per_step),
        "base_rss_mib": round(base / 1024, 1),
        "after_catalog_rss_mib": round(readings[-2] / 1024, 1),
        "after_item_plays_rss_mib": round(after_item_plays / 1024, 1),
        "after_each_item_step_rss_mib": [round(kib / 1024, 1) for kib in readings[1:]],
        "after_each_step_rss_mib": [round(kib / 1024, 1) for kib in after_steps],
        "after_users_rss_mib": round(after_steps[-1] / 1024, 1),
        "kib_per_item_in_catalog": round(
            catalog_growth / sum(item_steps[k].n_items for k in later), 3
        ),
        "kib_per_item": round(float(np.polyfit(cumulative, after_plays, 1)[0]), 3),
        "kib_per_item_in_catalog_average": round(
            sum(readings[i + 1] - readings[i] for i in range(0, len(readings) - 1, 2))
            / items_so_far,
            3,
        ),
        "kib_per_item_average": round((after_item_plays - base) / items_so_far, 3),
        "kib_per_user_average": round((after_steps[-1] - after_item_plays) / n_users, 3),
        "kib_per_user": round((after_steps[-1] - before_last) / users_per_step[-1], 3),
        "events_and_lists_seconds": round(seconds, 1),
        "allocator_trims": stats.get("allocator_trims"),
    }


def catalog_messages(topics: BenchTopics, items: list[CatalogItem]) -> list[Message]:
    return [(topics.catalog, item.item_id.encode(), encode_catalog_item(item)) for item in items]
