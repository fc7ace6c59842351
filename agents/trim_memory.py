"""Every few seconds, hand memory freed after a burst back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import functools

from stream.allocator import TRIM_INTERVAL_SECONDS, AllocatorTrimmer
from stream.app import app


@functools.cache
def worker_trimmer() -> AllocatorTrimmer:
    return AllocatorTrimmer()


@app.timer(TRIM_INTERVAL_SECONDS)
async def trim_memory() -> None:
    worker_trimmer().maybe_trim()
