"""The two ceilings Encore's worker is compared with, over the same pre-produced events.

* raw aiokafka: a consumer's ``getmany`` loop and ``orjson.loads`` per message --
  what Python can do with these messages at all;
* bare Faust: :mod:`bench.bare_faust_app`, an agent per topic that only decodes --
  what Faust's per-message machinery leaves of that.

Both leave out group joins and partition assignment (seconds, once per process),
which are not per-message cost: the raw loop is timed from its assignment to the
last message, the Faust app from the first message to the last.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from bench.common import ROOT, per_second, rss_kib
from stream.processes import stop_process

BARE_FAUST_APP = ROOT / "bench" / "bare_faust_app.py"


class CeilingFailed(RuntimeError):
    """A ceiling run did not see every message in time; the message says what it saw."""


async def measure_raw_aiokafka(
    bootstrap: str, topics: list[str], expected: int, timeout: float = 300.0
) -> dict[str, Any]:
    """Consume ``expected`` messages from ``topics`` (fresh group) and decode each with orjson."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:10]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    decoded = 0
    deadline = time.monotonic() + timeout
    try:
        # The clock starts once the group has assigned the partitions: the first fetch
        # is then counted (the first batch can hold the whole backlog of a small run).
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise CeilingFailed(f"raw aiokafka got no partitions in {timeout:.0f}s")
            await asyncio.sleep(0.005)
        started_at, started_cpu = time.perf_counter(), time.process_time()
        while decoded < expected:
            if time.monotonic() > deadline:
                raise CeilingFailed(f"raw aiokafka saw {decoded} of {expected} in {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)
                # (decoded dicts, discarded)
                decoded += len(records)
        seconds = time.perf_counter() - started_at
        cpu = time.process_time() - started_cpu
    finally:
        await consumer.stop()
    return {
        "messages": decoded,
        "seconds": round(seconds, 3),
        "events_per_second": per_second(decoded, seconds),
        "cpu_us_per_event": round(cpu / decoded * 1e6, 2),
    }


def measure_bare_faust(
    bootstrap: str,
    topics: list[str],
    expected: int,
    mode: str,
    work_dir: Path,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Run the bare Faust app in ``mode`` until it decoded ``expected`` messages; its figures.

    ``seconds`` is timed inside the app (first message to last); ``startup_seconds``
    is from process start to its first message report, for reference.
    """
    run_id = uuid.uuid4().hex[:10]
    result_path = work_dir / f"bare-faust-{mode}-{run_id}.json"
    log_path = work_dir / f"bare-faust-{mode}-{run_id}.log"
    env = {
        **os.environ,
        "BENCH_BROKER": bootstrap,
        "BENCH_TOPICS": ",".join(topics),
        "BENCH_EXPECTED": str(expected),
        "BENCH_MODE": mode,
        "BENCH_APP_ID": f"bench-bare-{mode}-{run_id}",
        "BENCH_RESULT": str(result_path),
        "BENCH_DATA_DIR": str(work_dir / f"bare-faust-data-{run_id}"),
    }
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(BARE_FAUST_APP), "worker", "--loglevel", "warn"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while not result_path.exists():
            if process.poll() is not None:
                raise CeilingFailed(
                    f"bare Faust ({mode}) exited with {process.returncode}; log: {log_path}"
                )
            if time.monotonic() - started > timeout:
                raise CeilingFailed(f"bare Faust ({mode}) not done in {timeout:.0f}s; {log_path}")
            time.sleep(0.1)
        rss = rss_kib(process.pid)
    finally:
        stop_process(process)
    line = orjson.loads(result_path.read_bytes())
    return {
        "mode": mode,
        "messages": line["messages"],
        "seconds": round(line["seconds"], 3),
        "events_per_second": per_second(line["messages"], line["seconds"]),
        "cpu_us_per_event": round(line["cpu_seconds"] / line["messages"] * 1e6, 2),
        "rss_mib": round(rss / 1024, 1),
        "wall_seconds_with_startup": round(time.monotonic() - started, 1),
    }


def run_raw_aiokafka(
    bootstrap: str, topics: list[str], expected: int, repeats: int = 3
) -> dict[str, Any]:
    """The best of ``repeats`` raw runs (each with a fresh group), and every run's rate.

    Best, not mean: it is a ceiling, and a run of a second or two is easily slowed
    by whatever else the shared machine does at that moment.
    """
    runs = [asyncio.run(measure_raw_aiokafka(bootstrap, topics, expected)) for _ in range(repeats)]
    best = max(runs, key=lambda run: run["events_per_second"] or 0.0)
    return {**best, "runs_events_per_second": [run["events_per_second"] for run in runs]}
