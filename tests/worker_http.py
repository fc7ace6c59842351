"""Driving a worker subprocess from a test: its HTTP views, waiting, a paced producer."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

import orjson
from aiokafka import AIOKafkaProducer

from stream.contracts import encode_interaction
from stream.models import Interaction

_TOPIC_OF_TYPE = {"play": "plays", "skip": "skips", "replay": "replays"}


def get_json(port: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return orjson.loads(response.read())


def status_of(port: str, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> float:
    """Seconds until ``predicate()`` held; raises after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if await asyncio.to_thread(predicate):
                return time.monotonic() - started
        except OSError:  # the web server is not up yet
            pass
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout:.0f}s")


async def produce_paced(
    worker_env, events: Iterable[Interaction], *, rate: float, id_prefix: str
) -> dict[str, Counter[str]]:
    """Send ``events`` at ``rate`` with live times and fresh ids; the truth per user and type."""
    truth: dict[str, Counter[str]] = defaultdict(Counter)
    producer = AIOKafkaProducer(bootstrap_servers=worker_env.bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        pending = []
        for index, event in enumerate(events):
            event = dataclasses.replace(
                event, timestamp=time.time(), event_id=f"{id_prefix}{index}"
            )
            topic = worker_env.topic(_TOPIC_OF_TYPE[event.type.value])
            pending.append(
                await producer.send(topic, encode_interaction(event), key=event.user_id.encode())
            )
            truth[event.user_id][event.type.value] += 1
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
            ahead = (index + 1) / rate - (time.perf_counter() - started)
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return truth
