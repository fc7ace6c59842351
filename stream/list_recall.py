"""Prequential recall@k measured from *published* lists, as a downstream app sees them.

Offline evaluation (:mod:`stream.evaluation`) asks the engine directly; this asks
the ``recommendations`` topic: for each positive event (play or replay) of a user
on an item they never interacted with before, was the item among the first ``k`` items of the
latest list published for that user *before* the event was produced? Events of
users with no list yet are not counted (cold start is another question). It
measures the whole deployment — several workers, item sharing, publishing lag —
from the outside, so one worker and several can be compared on the same stream.

>>> from stream.models import EventType
>>> recall = ListRecall(k=2)
>>> recall.list_published("u1", ["a", "b", "c"], at=1.0)
>>> recall.event("u1", "b", EventType.PLAY, at=2.0)   # hit: b is in the top 2
>>> recall.event("u1", "c", EventType.PLAY, at=3.0)   # miss: c is third
>>> recall.event("u1", "b", EventType.REPLAY, at=4.0)  # not new to u1: not counted
>>> recall.event("u2", "a", EventType.PLAY, at=5.0)   # no list for u2: not counted
>>> recall.as_dict()
{'k': 2, 'counted': 2, 'hits': 1, 'recall': 0.5, 'no_list_yet': 1}
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from stream.models import EventType, RecommendationList


def first_items(rec: RecommendationList, k: int) -> list[str]:
    """The first ``k`` distinct items of a list, rows in order (what a user sees first)."""
    seen: list[str] = []
    for row in rec.rows:
        for item in row.items:
            if item.item_id not in seen:
                seen.append(item.item_id)
                if len(seen) == k:
                    return seen
    return seen


class ListRecall:
    """Collects published lists and events (any order), then scores events against the
    latest list before each."""

    def __init__(self, k: int = 10) -> None:
        self.k = k
        # user -> (publish times, top-k item sets), kept sorted by time
        self._lists: dict[str, tuple[list[float], list[frozenset[str]]]] = defaultdict(
            lambda: ([], [])
        )
        self._events: list[tuple[float, str, str, bool]] = []

    def list_published(self, user_id: str, items: Iterable[str], *, at: float) -> None:
        times, tops = self._lists[user_id]
        index = bisect.bisect_right(times, at)
        times.insert(index, at)
        tops.insert(index, frozenset(list(items)[: self.k]))

    def event(self, user_id: str, item_id: str, kind: EventType, *, at: float) -> None:
        self._events.append((at, user_id, item_id, kind is not EventType.SKIP))

    def as_dict(self) -> dict[str, Any]:
        counted = hits = no_list = 0
        interacted: set[tuple[str, str]] = set()
        for at, user, item, positive in sorted(self._events):
            new_to_user = (user, item) not in interacted
            interacted.add((user, item))
            if not positive or not new_to_user:
                continue
            times, tops = self._lists.get(user, ((), ()))
            index = bisect.bisect_left(times, at) - 1
            if index < 0:
                no_list += 1
                continue
            counted += 1
            hits += item in tops[index]
        return {
            "k": self.k,
            "counted": counted,
            "hits": hits,
            "recall": hits / counted if counted else None,
            "no_list_yet": no_list,
        }
