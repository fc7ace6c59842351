"""A bounded memory of recent event ids, so a redelivered or retried event is not learned twice.

Ids are kept as 64-bit digests, oldest forgotten first. A collision between two
different ids within the window is possible in principle (about 1 in 10^9 for
a million ids) and would drop one event as a duplicate.

>>> seen = RecentIds(capacity=2)
>>> seen.add("e1"), seen.add("e1")
(True, False)
>>> seen.add("e2"), seen.add("e3")  # "e1" falls out of the window
(True, True)
>>> "e1" in seen, "e3" in seen
(False, True)

Storage: the digests in arrival order in a ring buffer of ``int64``, and an
open-addressing hash set of the same digests (linear probing, at most half
full; 0 marks an empty slot, so a digest of 0 is stored as 1). Both grow by
doubling up to what ``capacity`` needs: about 24 bytes per id at most, where a
Python ``set`` and ``deque`` of ``int`` took about 85. The probing loops are
compiled (numba, cached on disk).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import numpy as np
from numba import njit

_MIN_SLOTS: Final = 64


def _digest(event_id: str) -> int:
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1  # 0 marks an empty slot


@njit(cache=True)
def _slot(table: np.ndarray, digest: int) -> int:
    """Where ``digest`` is in ``table``, else the empty slot where it would go."""
    mask = len(table) - 1
    slot = digest & mask
    while table[slot] != digest and table[slot] != 0:
        slot = (slot + 1) & mask
    return slot


@njit(cache=True)
def _contains(table: np.ndarray, digest: int) -> bool:
    return table[_slot(table, digest)] == digest


@njit(cache=True)
def _remove(table: np.ndarray, digest: int) -> None:
    """Take ``digest`` (present) out of ``table``, moving later entries of its run back."""
    mask = len(table) - 1
    hole = _slot(table, digest)
    table[hole] = 0
    slot = hole
    while True:
        slot = (slot + 1) & mask
        value = table[slot]
        if value == 0:
            return
        home = value & mask
        # value may fill the hole unless its home lies cyclically in (hole, slot]
        if hole <= slot:
            stays = hole < home <= slot
        else:
            stays = home > hole or home <= slot
        if not stays:
            table[hole] = value
            table[slot] = 0
            hole = slot


@njit(cache=True)
def _add(table: np.ndarray, ring: np.ndarray, state: np.ndarray, digest: int) -> bool:
    """Add ``digest`` unless present; the oldest goes once ``state[2]`` (capacity) are kept.

    ``state`` is ``[oldest position in ring, count, capacity]``; ``ring`` has room
    for one more unless ``count`` is the capacity.
    """
    slot = _slot(table, digest)
    if table[slot] == digest:
        return False
    table[slot] = digest
    start, count, capacity = state[0], state[1], state[2]
    if count == capacity:
        _remove(table, ring[start])
        ring[start] = digest
        state[0] = (start + 1) % len(ring)
    else:
        ring[(start + count) % len(ring)] = digest
        state[1] = count + 1
    return True


@njit(cache=True)
def _add_many(table: np.ndarray, ring: np.ndarray, state: np.ndarray, digests: np.ndarray) -> int:
    """:func:`_add` each of ``digests`` in turn; how many were new."""
    added = 0
    for digest in digests:
        added += _add(table, ring, state, digest)
    return added


@njit(cache=True)
def _fill(table: np.ndarray, digests: np.ndarray) -> None:
    for digest in digests:
        table[_slot(table, digest)] = digest


class RecentIds:
    """The last ``capacity`` distinct ids; :meth:`add` says whether an id is new."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._ring = np.zeros(min(capacity, _MIN_SLOTS), dtype=np.int64)
        self._table = np.zeros(_MIN_SLOTS, dtype=np.int64)
        self._state = np.array([0, 0, capacity], dtype=np.int64)  # oldest, count, capacity
        # The id last looked up and its digest: add() after a membership test reuses it.
        self._last: tuple[str | None, int] = (None, 0)
        # Digests that fit before the ring or the hash set must grow.
        self._room = 0

    def _digest(self, event_id: str) -> int:
        last_id, digest = self._last
        if event_id is not last_id:
            digest = _digest(event_id)
            self._last = (event_id, digest)
        return digest

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; ``False`` if it was already in the window."""
        digest = self._digest(event_id)
        if self._room <= 0:
            self._reserve(1)
        self._room -= 1
        added: bool = _add(self._table, self._ring, self._state, digest)
        return added

    def _reserve(self, more: int) -> None:
        """Room for ``more`` digests: the ring and the hash set grow by doubling if needed."""
        count = int(self._state[1])
        needed = min(count + more, self.capacity)
        if needed > len(self._ring):
            ordered = self.digests()
            size = len(self._ring)
            while size < needed:
                size *= 2
            self._ring = np.zeros(min(size, self.capacity), dtype=np.int64)
            self._ring[:count] = ordered
            self._state[0] = 0
        if 2 * needed > len(self._table):
            size = len(self._table)
            while size < 2 * needed:
                size *= 2
            self._table = np.zeros(size, dtype=np.int64)
            _fill(self._table, self.digests())
        if count == self.capacity:  # full: each new digest replaces the oldest
            self._room = self.capacity
        else:
            self._room = min(len(self._ring), len(self._table) // 2) - count

    def _add_many(self, digests: np.ndarray) -> int:
        self._reserve(len(digests))
        self._room = 0  # recomputed on the next add
        return int(_add_many(self._table, self._ring, self._state, digests))

    def digests(self) -> np.ndarray:
        """The digests in the window, oldest first (a new array)."""
        start, count = int(self._state[0]), int(self._state[1])
        return np.roll(self._ring, -start)[:count]

    def merge(self, other: RecentIds) -> int:
        """Add ``other``'s ids (oldest first) to this window; how many were new here.

        When a partition moves between workers, its events' ids move with it.

        >>> mine, theirs = RecentIds(), RecentIds()
        >>> _ = mine.add("a"), theirs.add("a"), theirs.add("b")
        >>> mine.merge(theirs), "b" in mine, len(mine)
        (1, True, 2)
        """
        return self._add_many(other.digests())

    def __contains__(self, event_id: object) -> bool:
        found: bool = isinstance(event_id, str) and _contains(self._table, self._digest(event_id))
        return found

    def __len__(self) -> int:
        return int(self._state[1])

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "digests": self.digests()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        capacity = state["capacity"]
        RecentIds.__init__(self, capacity)
        if "digests" in state:
            digests = np.asarray(state["digests"], dtype=np.int64)
        else:  # a checkpoint of the set-and-deque layout: its (unsigned) digests, oldest first
            unsigned = np.array(state["_order"], dtype=np.uint64)
            digests = unsigned.view(np.int64).copy()
            digests[digests == 0] = 1
        self._add_many(digests)
