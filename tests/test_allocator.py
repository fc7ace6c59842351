"""Returning freed heap memory to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import pytest

from stream.allocator import AllocatorTrimmer

pytestmark = pytest.mark.skipif(
    not AllocatorTrimmer().available, reason="needs glibc's malloc_trim and mallinfo2"
)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def _burst_then_free(megabytes: int) -> list[bytes]:
    """Allocate many heap-sized buffers (below mmap's threshold), keep one in fifty."""
    buffers = [bytes(100_000) for _ in range(megabytes * 10)]
    return buffers[::50]


def test_a_trim_hands_a_freed_burst_back_to_the_os():
    trimmer = AllocatorTrimmer(min_free_bytes=64 * 1024 * 1024)
    kept = _burst_then_free(200)
    free = trimmer.free_bytes()
    assert free is not None and free > 150 * 1024 * 1024
    before = _rss_bytes()
    assert trimmer.maybe_trim()
    assert before - _rss_bytes() > 100 * 1024 * 1024
    assert trimmer.stats()["allocator_trims"] == 1
    assert trimmer.stats()["allocator_free_bytes_at_last_trim"] == free
    assert len(kept) == 40


def test_no_trim_while_little_is_free():
    trimmer = AllocatorTrimmer(min_free_bytes=1 << 50)
    _burst_then_free(20)
    assert not trimmer.maybe_trim()
    assert trimmer.stats() == {
        "allocator_trims": 0,
        "allocator_free_bytes_at_last_trim": None,
        "allocator_last_trim_seconds": None,
    }


_LARGE_BLOCKS = """
import sys
import numpy as np
from stream.allocator import AllocatorTrimmer, fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
free_before = AllocatorTrimmer().free_bytes()
for _ in range(3):  # each block freed before the next one is made
    block = np.ones(4 * 1024 * 1024 // 8)
    del block
print(AllocatorTrimmer().free_bytes() - free_before)
"""


@pytest.mark.parametrize("threshold", ["fixed", "glibc default"])
def test_with_a_fixed_mmap_threshold_a_freed_large_block_leaves_the_heap_at_once(threshold):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _LARGE_BLOCKS, threshold], capture_output=True, text=True, check=True
    )
    kept_free = int(run.stdout)
    if threshold == "fixed":
        assert kept_free < 1024 * 1024  # unmapped when freed: nothing left over
    else:
        # glibc raised its threshold when the first block was freed: the next ones came
        # from the heap, and (most of) the last one's 4 MiB stay there, freed but held
        assert kept_free >= 3 * 1024 * 1024
