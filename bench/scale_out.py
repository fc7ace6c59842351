"""Scale-out: the same backlog drained by one worker, then by two workers of one group.

Each run gets fresh topics (a unique prefix) and a fresh consumer group, and the
same catalog and events, so every run reads the same messages from offset 0.
The workers of a run share every setting except ``ENCORE_WORKER_ID``,
``ENCORE_WEB_PORT`` and ``ENCORE_DATA_DIR``, and share one
``ENCORE_CHECKPOINT_DIR`` (as ``docker-compose.yml`` runs them). Whatever the
worker does with those today is what is measured: with the code of this commit
each worker learns from the partitions it is assigned, and nothing more.

A run:

1. starts its workers together on the still empty topics and waits until every
   event partition has exactly one owner, unchanged for ``SETTLE_SECONDS``.
   Started on a full backlog, the first worker to join would take every partition
   and read alone for the seconds the group needs to rebalance;
2. produces the catalog and then the events as fast as the producer allows;
3. times the workers from the end of production (or their first accepted event,
   if later) to the last event any of them accepted: the producer shares the
   machine's cores while it runs, so the events accepted meanwhile are left out
   of the rate (``events_before_window``). A group that took every event before
   production ended (a small backlog) is timed from its first accepted event
   instead, production included, without CPU figures (``window_start``);
4. waits until no worker has a user waiting for a list and their publishers have
   been quiet: end to end = every event / (first event accepted -> last list),
   production included (lists are published while the backlog still arrives).

The rates are figures, never asserted; what a run asserts is only that it
measured something (every worker got partitions, the window saw events).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from bench.common import (
    BenchTopics,
    MachineCpu,
    Message,
    cpu_seconds,
    per_second,
    produce_all,
    ratio,
    rss_kib,
)
from bench.worker_runs import POLL_SECONDS, RunningEncore, WorkerRunFailed, _handled
from stream.processes import free_port, start_worker, stop_process, wait_until_ready

#: The assignment must hold this long before the backlog is produced: a group that
#: just rebalanced may rebalance again when a slower member finishes joining.
SETTLE_SECONDS: Final = 1.0
#: Worker counts compared, in the order they run.
WORKER_COUNTS: Final = (1, 2)

#: (topic, partition) -> index of the worker that holds it (several while rebalancing)
Owners = dict[tuple[str, int], list[int]]


@contextlib.contextmanager
def worker_group(
    bootstrap: str,
    topics: BenchTopics,
    partitions: int,
    work_dir: Path,
    name: str,
    count: int,
) -> Iterator[list[RunningEncore]]:
    """``count`` ready workers of one fresh consumer group on ``topics``, stopped afterwards.

    Started together, then waited for one by one: joining is what takes the time.
    """
    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    common = {
        "ENCORE_BROKER": bootstrap,
        "ENCORE_TOPIC_PREFIX": topics.prefix,
        "ENCORE_APP_ID": f"bench-{run_id}",
        "ENCORE_PARTITIONS": str(partitions),
        "ENCORE_CHECKPOINT_DIR": str(work_dir / f"checkpoints-{run_id}"),
        "ENCORE_WEB_ENABLED": "true",
    }
    started: list[RunningEncore] = []
    processes = []
    try:
        for number in range(1, count + 1):
            port = free_port()
            env = {
                **common,
                "ENCORE_WORKER_ID": f"{run_id}-w{number}",
                "ENCORE_WEB_PORT": str(port),
                "ENCORE_DATA_DIR": str(work_dir / f"worker-data-{run_id}-w{number}"),
            }
            log_path = work_dir / f"worker-{run_id}-w{number}.log"
            processes.append(start_worker(env, log_path))
            started.append(RunningEncore(pid=processes[-1].pid, web_port=port, log_path=log_path))
        for process, worker in zip(processes, started, strict=True):
            wait_until_ready(process, worker.log_path, timeout=120.0)
        yield started
    finally:
        for process in processes:
            stop_process(process)


def event_owners(samples: Sequence[dict[str, Any]], event_topics: Sequence[str]) -> Owners:
    """Who holds each event partition, from the workers' ``/stats/`` ``consumer_lag`` rows.

    >>> row = lambda topic, partition: {"topic": topic, "partition": partition}
    >>> event_owners([{"consumer_lag": {"partitions": [row("plays", 0), row("catalog", 0)]}},
    ...               {"consumer_lag": {"partitions": [row("plays", 1)]}}], ["plays"])
    {('plays', 0): [0], ('plays', 1): [1]}
    """
    owners: Owners = {}
    for index, stats in enumerate(samples):
        for row in stats["consumer_lag"]["partitions"]:
            if row["topic"] in event_topics:
                owners.setdefault((row["topic"], row["partition"]), []).append(index)
    return dict(sorted(owners.items()))


def settled(owners: Owners, event_topics: Sequence[str], partitions: int, workers: int) -> bool:
    """Every event partition has exactly one owner, and every worker owns some.

    >>> settled({("plays", 0): [0], ("plays", 1): [1]}, ["plays"], 2, workers=2)
    True
    >>> settled({("plays", 0): [0], ("plays", 1): [0]}, ["plays"], 2, workers=2)
    False
    >>> settled({("plays", 0): [0, 1], ("plays", 1): [1]}, ["plays"], 2, workers=2)
    False
    """
    expected = {(topic, partition) for topic in event_topics for partition in range(partitions)}
    return (
        set(owners) == expected
        and all(len(holders) == 1 for holders in owners.values())
        and {holders[0] for holders in owners.values()} == set(range(workers))
    )


async def _sample(workers: Sequence[RunningEncore]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(worker.stats() for worker in workers)))


async def wait_until_settled(
    workers: Sequence[RunningEncore],
    event_topics: Sequence[str],
    partitions: int,
    timeout: float,
) -> tuple[Owners, float]:
    """Poll until the group's assignment is settled and held ``SETTLE_SECONDS``.

    Returns the assignment and how long the wait took.
    """
    started = time.monotonic()
    held_since, last = None, None
    while True:
        samples = await _sample(workers)
        now = time.monotonic()
        owners = event_owners(samples, event_topics)
        if not settled(owners, event_topics, partitions, len(workers)):
            held_since = None
        elif owners != last or held_since is None:
            held_since = now
        elif now - held_since >= SETTLE_SECONDS:
            return owners, round(now - started, 2)
        last = owners
        if now - started > timeout:
            raise WorkerRunFailed(
                f"{len(workers)} workers did not settle on the event partitions in "
                f"{timeout:.0f}s; last assignment {owners}; logs: "
                + ", ".join(str(worker.log_path) for worker in workers)
            )
        await asyncio.sleep(POLL_SECONDS)


async def measure_group_drain(
    bootstrap: str,
    workers: Sequence[RunningEncore],
    event_topics: Sequence[str],
    partitions: int,
    messages: Sequence[Message],
    expected_events: int,
    time_limit: float,
) -> dict[str, Any]:
    """Produce ``messages`` into a settled group, then time it through them.

    ``expected_events`` of the messages are events (the rest is the catalog). See
    the module's docstring for the window; a group that cannot finish within
    ``time_limit`` is measured over what it did (``complete`` false).
    """
    owners, settle_seconds = await wait_until_settled(
        workers, event_topics, partitions, timeout=60.0
    )
    produce_started = time.perf_counter()
    produced = await produce_all(bootstrap, messages)
    produce_seconds = time.perf_counter() - produce_started

    start: dict[str, Any] = {}
    assignment_changed = False
    deadline = time.monotonic() + time_limit
    complete = False
    while True:
        samples = await _sample(workers)
        now = time.monotonic()
        accepted = [stats["events_accepted"] for stats in samples]
        if not start and sum(accepted):
            start = {
                "at": now,
                "wall": time.time(),
                "accepted": accepted,
                "cpu": [cpu_seconds(worker.pid) for worker in workers],
                "machine": MachineCpu.read(),
            }
        assignment_changed |= event_owners(samples, event_topics) != owners
        if sum(_handled(stats) for stats in samples) >= expected_events:
            complete = True
            break
        if now > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if not start:
        raise WorkerRunFailed(f"the group accepted no event in {time_limit:.0f}s")
    ended_at = time.monotonic()
    cpu_end = [cpu_seconds(worker.pid) for worker in workers]
    machine_idle = MachineCpu.read().idle_share_since(start["machine"])
    # Each worker stamps its last event with its wall clock: more exact than the poll.
    last_events = [stats["last_event_processed_at"] for stats in samples]
    ingest_end = max((stamp for stamp in last_events if stamp), default=time.time())
    window = max(1e-9, ended_at - start["at"])
    in_window = [now - before for now, before in zip(accepted, start["accepted"], strict=True)]
    window_start = "end_of_production"
    if complete and not sum(in_window):
        # The group took every event while production still ran (a small backlog, fast
        # workers): no window after it. Time the whole run from the first event any worker
        # accepted (their own stamps), production included, and say so.
        window_start = "first_event_production_included"
        start["wall"] = min(
            stats["first_event_processed_at"]
            for stats in samples
            if stats["first_event_processed_at"]
        )
        start["accepted"] = [0] * len(workers)
        in_window = accepted
    ingest_seconds = max(1e-9, ingest_end - start["wall"])
    cpu_measured = window_start == "end_of_production"  # the CPU readings began after it

    end_to_end_seconds = None
    lists_drained = False
    if complete:
        # The lists get a time limit of their own: publishing is slower than ingest.
        outcomes = await asyncio.gather(
            *(worker.wait_until_lists_drained(time_limit) for worker in workers),
            return_exceptions=True,
        )
        drained = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, WorkerRunFailed):
                raise outcome
        lists_drained = len(drained) == len(workers)
        if lists_drained:
            samples = [stats for _, stats in drained]
            # From the first event any worker accepted (its own wall clock stamp: production
            # was still running then) to the last list; the drain times are monotonic.
            last_list = max(at for at, _ in drained) + (time.time() - time.monotonic())
            first_event = min(
                stats["first_event_processed_at"]
                for stats in samples
                if stats["first_event_processed_at"]
            )
            end_to_end_seconds = last_list - first_event
        else:
            samples = await _sample(workers)

    per_worker = []
    for index, (worker, stats) in enumerate(zip(workers, samples, strict=True)):
        cpu = cpu_end[index] - start["cpu"][index]
        per_worker.append(
            {
                "event_partitions": sum(holders == [index] for holders in owners.values()),
                "events_accepted": stats["events_accepted"],
                "events_in_window": in_window[index],
                "ingest_events_per_second": per_second(in_window[index], ingest_seconds),
                "cpu_share_of_one_core": round(cpu / window, 2) if cpu_measured else None,
                "cpu_us_per_event": (
                    round(cpu / max(1, in_window[index]) * 1e6, 1) if cpu_measured else None
                ),
                "lists_published": stats["lists_published"],
                "rejected": stats["rejected_by_reason"],
                "rss_mib_after": round(rss_kib(worker.pid) / 1024, 1),
            }
        )
    total_accepted = sum(worker["events_accepted"] for worker in per_worker)
    return {
        "workers": len(workers),
        "events": expected_events,
        "messages_produced": produced,
        "produce_seconds": round(produce_seconds, 2),
        "settle_seconds": settle_seconds,
        "complete": complete,
        "events_accepted": total_accepted,
        "window_start": window_start,
        "events_before_window": sum(start["accepted"]),
        "events_in_window": sum(in_window),
        "ingest_seconds": round(ingest_seconds, 3),
        "ingest_events_per_second": per_second(sum(in_window), ingest_seconds),
        "end_to_end_seconds": None if end_to_end_seconds is None else round(end_to_end_seconds, 3),
        "end_to_end_events_per_second": (
            None if end_to_end_seconds is None else per_second(total_accepted, end_to_end_seconds)
        ),
        "lists_drained": lists_drained,
        "users_waiting_for_a_list_at_stop": sum(
            stats["users_waiting_for_a_list"] for stats in samples
        ),
        "lists_published": sum(worker["lists_published"] for worker in per_worker),
        "cpu_share_of_one_core": (
            round((sum(cpu_end) - sum(start["cpu"])) / window, 2) if cpu_measured else None
        ),
        "machine_idle_share": machine_idle,
        "assignment_changed_during_run": assignment_changed,
        "per_worker": per_worker,
    }


def scale_out_run(
    bootstrap: str,
    topics: BenchTopics,
    partitions: int,
    work_dir: Path,
    workers: int,
    messages: Sequence[Message],
    expected_events: int,
    time_limit: float,
) -> dict[str, Any]:
    """One run: ``workers`` workers of a fresh group on ``topics`` (created, still empty)."""
    with worker_group(bootstrap, topics, partitions, work_dir, f"scale{workers}", workers) as group:

        async def measure() -> dict[str, Any]:
            try:
                return await measure_group_drain(
                    bootstrap,
                    group,
                    topics.event_topics,
                    partitions,
                    messages,
                    expected_events,
                    time_limit,
                )
            finally:
                for worker in group:
                    await worker.close()

        result = asyncio.run(measure())
    return {"topic_prefix": topics.prefix, **result}


def scale_out_ratios(one: dict[str, Any] | None, two: dict[str, Any] | None) -> dict[str, Any]:
    """Two workers' rates over one worker's (``None`` where a run is missing or failed)."""

    def rate(run: dict[str, Any] | None, key: str) -> float | None:
        return None if not run or run.get("error") else run.get(key)

    return {
        "two_workers_to_one_ingest": ratio(
            rate(two, "ingest_events_per_second"), rate(one, "ingest_events_per_second")
        ),
        "two_workers_to_one_end_to_end": ratio(
            rate(two, "end_to_end_events_per_second"), rate(one, "end_to_end_events_per_second")
        ),
    }
