"""Every few seconds: hand memory freed after a burst back to the OS (glibc's malloc_trim),
and freeze the long-lived objects out of Python's garbage collector (:mod:`stream.collector`)."""

from __future__ import annotations

import functools

from stream.allocator import TRIM_INTERVAL_SECONDS, AllocatorTrimmer
from stream.app import app
from stream.collector import CollectorFreezer
from stream.settings import get_settings


@functools.cache
def worker_trimmer() -> AllocatorTrimmer:
    return AllocatorTrimmer()


@functools.cache
def worker_freezer() -> CollectorFreezer:
    return CollectorFreezer(get_settings().gc_full_collection_seconds)


@app.timer(TRIM_INTERVAL_SECONDS)
async def trim_memory() -> None:
    worker_trimmer().maybe_trim()
    worker_freezer().maybe_freeze()
