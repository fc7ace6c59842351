"""Shared pieces of the throughput benchmark: topics, fast producing, process facts, figures.

Nothing here measures anything by itself; :mod:`bench.run` strings the phases together.
Process figures come from ``/proc`` (Linux), so no extra dependency is needed:

>>> import os
>>> rss_kib(os.getpid()) > 0 and cpu_seconds(os.getpid()) >= 0.0
True
>>> percentiles([0.001 * n for n in range(1, 101)])
{'p50': 50.0, 'p95': 95.0, 'p99': 99.0, 'max': 100.0, 'mean': 50.5}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.contracts import format_time, interaction_to_wire
from stream.models import EventType, Interaction

ROOT: Final = Path(__file__).resolve().parent.parent
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")

#: (topic, key, value) of one message to produce.
Message = tuple[str, bytes, bytes]


@dataclass(frozen=True, slots=True)
class BenchTopics:
    """The topic names of one benchmark run: Encore's topics under a unique prefix."""

    prefix: str

    def name(self, base_name: str) -> str:
        return f"{self.prefix}{base_name}"

    def for_event_type(self, event_type: EventType) -> str:
        from stream.topics import EVENT_TOPICS

        return self.name(EVENT_TOPICS[event_type].base_name)

    @property
    def event_topics(self) -> list[str]:
        """plays, skips and replays: what the ceilings and the worker's learners read."""
        return [self.for_event_type(event_type) for event_type in EventType]

    @property
    def catalog(self) -> str:
        return self.name("catalog")

    @property
    def recommendations(self) -> str:
        return self.name("recommendations")

    @property
    def probe(self) -> str:
        """The benchmark's own topic for Kafka's round-trip latency (no worker reads it)."""
        return self.name("bench-probe")


async def create_topics(bootstrap: str, topics: BenchTopics, partitions: int) -> None:
    """Every Encore topic under ``topics.prefix``, and the probe, with ``partitions`` each.

    Created before anything is produced, so the broker's auto-creation (one
    partition) never decides the layout.
    """
    from stream.settings import Settings
    from stream.topics import ensure_topics

    await ensure_topics(
        Settings(broker=bootstrap, topic_prefix=topics.prefix, partitions=partitions)
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topics.probe, partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


def event_payload(
    event: Interaction, *, event_id: str | None = None, occurred_at: float | None = None
) -> bytes:
    """The wire bytes of ``event``, optionally with another id and event time."""
    doc = interaction_to_wire(event)
    if event_id is not None:
        doc["event_id"] = event_id
    if occurred_at is not None:
        doc["occurred_at"] = format_time(occurred_at)
    return orjson.dumps(doc)


def fast_producer(bootstrap: str, *, linger_ms: int = 20) -> AIOKafkaProducer:
    """A producer tuned for bulk loading: large batches, no compression, leader acks.

    No compression because the broker sits on the same machine (lz4 would also
    need an extra package); ``acks=1`` because the data is disposable.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


@contextlib.contextmanager
def quiet_producer_retries() -> Iterator[None]:
    """Hide aiokafka's warnings about produce errors it retries, for bulk loads only.

    Right after topics are created the broker answers ``NotLeaderForPartition`` for a
    moment even when the metadata already names a leader; the producer retries and
    succeeds. An error it cannot retry still fails the load (the send futures raise).
    """
    sender_log = logging.getLogger("aiokafka.producer.sender")
    previous = sender_log.level
    sender_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        sender_log.setLevel(previous)


async def produce_all(bootstrap: str, messages: Iterable[Message]) -> int:
    """Produce every message as fast as the producer allows; returns how many."""
    with quiet_producer_retries():
        return await _produce_all(bootstrap, messages)


async def _produce_all(bootstrap: str, messages: Iterable[Message]) -> int:
    producer = fast_producer(bootstrap)
    await producer.start()
    count = 0
    try:
        in_flight: list[asyncio.Future[Any]] = []
        for topic, key, value in messages:
            in_flight.append(await producer.send(topic, value, key=key))
            count += 1
            if len(in_flight) >= 20_000:
                # Bound memory, and surface a delivery error early instead of at the end.
                await asyncio.gather(*in_flight)
                in_flight.clear()
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return count


# --------------------------------------------------------------------------- the worker's figures


async def fetch_worker_stats(session: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    """The worker's ``GET /stats/`` counters."""
    async with session.get(
        f"http://127.0.0.1:{port}/stats/", timeout=aiohttp.ClientTimeout(total=10)
    ) as response:
        response.raise_for_status()
        stats: dict[str, Any] = orjson.loads(await response.read())
        return stats


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """A reading of the machine's CPU counters (``/proc/stat``), to tell waiting from working.

    A worker that falls behind while the machine has idle CPU is waiting on something
    (the broker, a timer, flow control), not computing.
    """

    idle: int
    total: int

    @classmethod
    def read(cls) -> MachineCpu:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return cls(idle=fields[3] + fields[4], total=sum(fields[:8]))  # idle + iowait

    def idle_share_since(self, earlier: MachineCpu) -> float | None:
        """Share of all cores' time that was idle between ``earlier`` and this reading."""
        elapsed = self.total - earlier.total
        return round((self.idle - earlier.idle) / elapsed, 3) if elapsed > 0 else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time that process ``pid`` has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; the fields after its closing parenthesis do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


# --------------------------------------------------------------------------- figures


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 / max / mean of durations in seconds, in milliseconds (nearest rank).

    All ``None`` for an empty sample, so a run that got no lists still writes its JSON.
    """
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    sample = np.asarray(seconds, dtype=float) * 1000.0
    # "inverted_cdf" is the nearest-rank percentile: always a latency that was observed.
    p50, p95, p99 = np.percentile(sample, [50, 95, 99], method="inverted_cdf")
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(sample.max()), 3),
        "mean": round(float(sample.mean()), 3),
    }


def per_second(count: float, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def git_commit() -> dict[str, Any]:
    """The commit the benchmark ran on, and whether the working tree had changes."""

    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def machine_facts() -> dict[str, Any]:
    """What a reader needs to compare two result files: cores, CPU, Python, load."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import faust._cython.streams  # noqa: F401

        faust_cython = True
    except ImportError:
        faust_cython = False
    import aiokafka
    import faust

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "faust": faust.__version__,
        "faust_cython_extensions": faust_cython and not os.environ.get("NO_CYTHON"),
        "aiokafka": aiokafka.__version__,
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "executable": sys.executable,
    }


def now_stamp() -> str:
    """A file-name-safe UTC timestamp, e.g. ``20261122T183748Z``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
