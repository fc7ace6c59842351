"""A bounded memory of recent event ids, so a redelivered or retried event is not learned twice.

Ids are kept as 64-bit digests (about 70 bytes each with the set and queue
entries, instead of the id string), oldest forgotten first. A collision between
two different ids within the window is possible in principle (about 1 in 10^9 for
a million ids) and would drop one event as a duplicate.

>>> seen = RecentIds(capacity=2)
>>> seen.add("e1"), seen.add("e1")
(True, False)
>>> seen.add("e2"), seen.add("e3")  # "e1" falls out of the window
(True, True)
>>> "e1" in seen, "e3" in seen
(False, True)
"""

from __future__ import annotations

import hashlib
from collections import deque


def _digest(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


class RecentIds:
    """The last ``capacity`` distinct ids; :meth:`add` says whether an id is new."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._members: set[int] = set()
        self._order: deque[int] = deque()

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; ``False`` if it was already in the window."""
        digest = _digest(event_id)
        if digest in self._members:
            return False
        self._members.add(digest)
        self._order.append(digest)
        if len(self._order) > self.capacity:
            self._members.discard(self._order.popleft())
        return True

    def merge(self, other: RecentIds) -> int:
        """Add ``other``'s ids (oldest first) to this window; how many were new here.

        When a partition moves between workers, its events' ids move with it.

        >>> mine, theirs = RecentIds(), RecentIds()
        >>> _ = mine.add("a"), theirs.add("a"), theirs.add("b")
        >>> mine.merge(theirs), "b" in mine, len(mine)
        (1, True, 2)
        """
        added = 0
        members, order = self._members, self._order
        for digest in other._order:  # noqa: SLF001 - same class
            if digest not in members:
                members.add(digest)
                order.append(digest)
                added += 1
        while len(order) > self.capacity:
            members.discard(order.popleft())
        return added

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and _digest(event_id) in self._members

    def __len__(self) -> int:
        return len(self._order)
