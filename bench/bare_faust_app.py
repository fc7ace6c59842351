"""The bare Faust ceiling: one agent per input topic that only decodes each message.

No engine, no table, no send: what is left is Faust's own cost of handing a
message to an agent. It runs as a worker subprocess of :mod:`bench.run`, over the
same pre-produced topics as the raw aiokafka loop, configured like Encore's app
(raw serializers, in-memory store, earliest offsets) so that the difference to
the raw loop is Faust's machinery and nothing else.

When the ``BENCH_EXPECTED``-th message is decoded it writes one JSON line to
``BENCH_RESULT``; the parent reads it and stops the worker. Settings, all
required (env, so that Faust's own command line stays untouched)::

    BENCH_BROKER    host:port
    BENCH_TOPICS    comma-separated topic names (one agent each)
    BENCH_EXPECTED  messages to count before reporting
    BENCH_MODE      events | take_events
    BENCH_APP_ID    Faust app id = consumer group (fresh per run)
    BENCH_RESULT    file the result line goes to
    BENCH_DATA_DIR  Faust's data directory

Run by hand::

    BENCH_BROKER=127.0.0.1:9092 BENCH_TOPICS=plays BENCH_EXPECTED=100000 \\
    BENCH_MODE=events BENCH_APP_ID=bare-1 BENCH_RESULT=/tmp/bare.json \\
    BENCH_DATA_DIR=/tmp/bare .venv/bin/python bench/bare_faust_app.py worker -l warn
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

import faust
import orjson

MODES: Final = ("events", "take_events")
#: Batch size and wait of ``take_events``: what a batching learner would use.
TAKE_MAX: Final = 2000
TAKE_WITHIN_SECONDS: Final = 0.05

broker = os.environ["BENCH_BROKER"]
topic_names = os.environ["BENCH_TOPICS"].split(",")
expected = int(os.environ["BENCH_EXPECTED"])
mode = os.environ["BENCH_MODE"]
result_path = Path(os.environ["BENCH_RESULT"])
if mode not in MODES:
    raise SystemExit(f"BENCH_MODE must be one of {MODES}, not {mode!r}")

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=f"kafka://{broker}",
    store="memory://",
    web_enabled=False,
    datadir=os.environ["BENCH_DATA_DIR"],
    consumer_auto_offset_reset="earliest",
)


class Tally:
    """Counts decoded messages over every agent; reports once the expected count is reached."""

    def __init__(self) -> None:
        self.decoded = 0
        self.first_at: float | None = None
        self.first_cpu: float | None = None
        self.reported = False

    def add(self, count: int) -> None:
        if self.first_at is None:
            # Started at the first message: group join and partition assignment are not Faust's
            # per-message cost, and the raw loop is timed the same way.
            self.first_at, self.first_cpu = time.perf_counter(), time.process_time()
        self.decoded += count
        if self.decoded >= expected and not self.reported:
            self.reported = True
            self._report()

    def _report(self) -> None:
        assert self.first_at is not None and self.first_cpu is not None
        line = {
            "mode": mode,
            "messages": self.decoded,
            "seconds": time.perf_counter() - self.first_at,
            "cpu_seconds": time.process_time() - self.first_cpu,
        }
        temporary = result_path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(line) + b"\n")
        temporary.replace(result_path)  # the parent never reads half a line


tally = Tally()


def decode_each(
    topic_name: str,
) -> Callable[[AsyncIterator[Any]], Coroutine[Any, Any, None]]:
    async def decode_per_event(stream: Any) -> None:
        # The way Encore's learners iterate today: one event at a time.
        async for event in stream.events():
            orjson.loads(event.value)
            # (decoded dict, discarded)
            tally.add(1)

    async def decode_per_batch(stream: Any) -> None:
        async for events in stream.take_events(TAKE_MAX, within=TAKE_WITHIN_SECONDS):
            for event in events:
                orjson.loads(event.value)
            # (up to TAKE_MAX decoded dicts, discarded)
            tally.add(len(events))

    chosen = decode_per_event if mode == "events" else decode_per_batch
    chosen.__name__ = f"decode_{topic_name.replace('-', '_')}"
    return chosen


for name in topic_names:
    topic = app.topic(name, key_serializer="raw", value_serializer="raw")
    app.agent(topic, name=f"decode_{name}")(decode_each(name))


if __name__ == "__main__":
    app.main()
