"""Freezing the long-lived objects out of Python's garbage collector, with full collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from stream.collector import CollectorFreezer


class Node:
    """An object that can be part of a reference cycle and be watched with a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()
    gc.unfreeze()  # this test process must not keep frozen objects


def test_frozen_objects_are_left_out_of_collections_until_a_full_one(clock: Clock) -> None:
    freezer = CollectorFreezer(full_every_seconds=600.0, clock=clock)
    alive_when_frozen = cycle()
    freezer.maybe_freeze()
    assert gc.get_freeze_count() > 0 and freezer.freezes == 1
    made_after = cycle()
    gc.collect()
    assert made_after() is None, "objects made since the freeze are collected as usual"
    assert alive_when_frozen() is not None, "a frozen cycle waits for the full collection"

    clock.now = 599.0
    freezer.maybe_freeze()
    assert alive_when_frozen() is not None and freezer.full_collections == 0

    clock.now = 600.0
    freezer.maybe_freeze()
    assert alive_when_frozen() is None
    stats = freezer.stats()
    assert stats["gc_full_collections"] == 1 and stats["gc_freezes"] == 3
    assert stats["gc_last_full_collection_unreachable"] >= 2  # the two nodes, at least
    assert stats["gc_last_full_collection_ms"] >= 0 and gc.get_freeze_count() > 0


def test_referenced_frozen_objects_survive_the_full_collection(clock: Clock) -> None:
    freezer = CollectorFreezer(full_every_seconds=10.0, clock=clock)
    kept = Node()
    kept.other = kept
    freezer.maybe_freeze()
    clock.now = 10.0
    freezer.maybe_freeze()
    assert freezer.full_collections == 1 and kept.other is kept


def test_zero_leaves_pythons_default_collector(clock: Clock) -> None:
    freezer = CollectorFreezer(full_every_seconds=0.0, clock=clock)
    before = gc.get_freeze_count()
    watched = cycle()
    freezer.maybe_freeze()
    assert gc.get_freeze_count() == before and freezer.freezes == 0
    gc.collect()
    assert watched() is None
    assert freezer.stats()["gc_freezing"] is False
