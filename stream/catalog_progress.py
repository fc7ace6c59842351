"""Whether this worker has read the whole catalog topic, so a missing item means "unknown".

The catalog and the event topics are consumed concurrently: at start-up, events
may be processed before the catalog has been read, and an item that is merely
not read *yet* must not be dead-lettered as ``unknown_item``. The catalog counts
as read once this worker owns every catalog partition and has processed each one
from its first offset up to the end offset it had when checked (an empty
partition needs nothing).

What is *not* guaranteed: a worker that resumed a catalog partition from a
committed offset (a restart, a rebalance) never counts it as read from the start,
nor does one whose first surviving record sits after the log start (compaction
removed the records before it): the check stays off there, which errs towards
accepting events. Once read, items announced later are known as they arrive;
an event that overtakes its item's catalog message is rejected.

>>> progress = CatalogProgress()
>>> progress.complete(2, earliest={0: 0, 1: 0}, ends={0: 0, 1: 2})
False
>>> progress.read(1, 0), progress.read(1, 1)
(None, None)
>>> progress.complete(2, earliest={0: 0, 1: 0}, ends={0: 0, 1: 2})
True
>>> progress.complete(2, earliest={1: 0}, ends={1: 2})  # partition 0 is another worker's
False
"""

from __future__ import annotations

from collections.abc import Mapping


class CatalogProgress:
    """Per catalog partition: the first offset this process read and the next one to read."""

    def __init__(self) -> None:
        self._first: dict[int, int] = {}
        self._next: dict[int, int] = {}

    def read(self, partition: int, offset: int) -> None:
        """Record that the catalog message at ``offset`` of ``partition`` was processed."""
        self._first.setdefault(partition, offset)
        self._next[partition] = offset + 1

    def forget(self, partition: int) -> None:
        """The partition was revoked: what was read of it says nothing about what follows."""
        self._first.pop(partition, None)
        self._next.pop(partition, None)

    def complete(
        self, n_partitions: int, *, earliest: Mapping[int, int], ends: Mapping[int, int]
    ) -> bool:
        """Whether every one of ``n_partitions`` is in ``ends`` and was read from start to end.

        ``earliest`` and ``ends`` are the first and the next offset of each partition
        this worker owns (the broker's log start and end offsets).
        """
        if set(ends) != set(range(n_partitions)):
            return False
        for partition, end in ends.items():
            start = earliest[partition]
            if end <= start:
                continue  # empty
            first = self._first.get(partition)
            if first is None or first > start or self._next[partition] < end:
                return False
        return True
