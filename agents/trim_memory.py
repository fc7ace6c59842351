"""Every few seconds, hand memory freed after a burst back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import functools

from stream.allocator import AllocatorTrimmer
from stream.app import app

#: Seconds between looks at how much the allocator holds free (a look costs microseconds).
TRIM_SECONDS = 5.0


@functools.cache
def worker_trimmer() -> AllocatorTrimmer:
    return AllocatorTrimmer()


@app.timer(TRIM_SECONDS)
async def trim_memory() -> None:
    worker_trimmer().maybe_trim()
