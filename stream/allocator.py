"""Give back to the OS the memory the C allocator keeps after Python freed it (glibc).

A worker allocates and frees large buffers all the time -- fetched record sets,
encoded lists, pickles -- and glibc's ``malloc`` keeps the freed pages of its
heap for reuse instead of returning them, so the resident size creeps up to the
largest burst ever seen. ``malloc_trim(0)`` hands every free page back
(``madvise``), which is what an operator watching RSS expects after a burst.

:class:`AllocatorTrimmer` trims only when the allocator holds at least
``min_free_bytes`` unused (``mallinfo2``), so a quiet worker pays nothing. On a
C library without these calls (musl, macOS) it does nothing.

>>> trimmer = AllocatorTrimmer(min_free_bytes=0)
>>> trimmer.maybe_trim() == trimmer.available
True
>>> trimmer.stats()["allocator_trims"] == int(trimmer.available)
True
"""

from __future__ import annotations

import ctypes
import time

#: Trim once the allocator holds this much freed memory.
DEFAULT_MIN_FREE_BYTES = 32 * 1024 * 1024
#: Seconds between a worker's looks at how much is free (a look walks the free lists:
#: a few milliseconds on a large, fragmented heap).
TRIM_INTERVAL_SECONDS = 5.0


#: Blocks at least this large get pages of their own (mmap), handed back when freed.
MMAP_THRESHOLD_BYTES = 256 * 1024
#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every block of ``threshold`` bytes or more with pages of its own; whether it
    could (glibc only).

    glibc starts at 128 KiB but raises the threshold each time such a block is freed,
    up to 32 MiB, after which large blocks come from the heap: a freed one stays
    resident until a trim, and a ``calloc`` reusing heap memory writes zeros over all
    of it. So the spare capacity of a grown numpy array (zeros never touched) is
    resident or not depending on the heap's history, and a worker's RSS wanders by
    tens of MiB with it. A fixed threshold disables the raising: large blocks are
    always mapped, their untouched zeros cost nothing, and freeing one unmaps it. The
    price is a ``mmap``/``munmap`` per large block (a fetched record set, a grown
    array), microseconds per megabyte.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, threshold) == 1


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class AllocatorTrimmer:
    """Calls ``malloc_trim(0)`` when glibc holds at least ``min_free_bytes`` of freed memory."""

    def __init__(self, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> None:
        self.min_free_bytes = min_free_bytes
        try:
            libc = ctypes.CDLL(None)
            self._trim = libc.malloc_trim
            self._info = libc.mallinfo2
        except (OSError, AttributeError):
            self._trim = self._info = None
        else:
            self._trim.argtypes = [ctypes.c_size_t]
            self._trim.restype = ctypes.c_int
            self._info.argtypes = []
            self._info.restype = _MallInfo2
        self.trims = 0
        self.last_free_bytes: int | None = None
        self.last_seconds: float | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def free_bytes(self) -> int | None:
        """Bytes the allocator holds in free chunks (all arenas); ``None`` if unknown."""
        if self._info is None:
            return None
        return int(self._info().fordblks)

    def maybe_trim(self) -> bool:
        """Trim if enough is free; whether it did."""
        free = self.free_bytes()
        if free is None or self._trim is None or free < self.min_free_bytes:
            return False
        started = time.perf_counter()
        self._trim(0)
        self.last_seconds = time.perf_counter() - started
        self.last_free_bytes = free
        self.trims += 1
        return True

    def stats(self) -> dict[str, object]:
        """JSON-ready figures for ``/stats/``."""
        return {
            "allocator_trims": self.trims,
            "allocator_free_bytes_at_last_trim": self.last_free_bytes,
            "allocator_last_trim_seconds": self.last_seconds,
        }
