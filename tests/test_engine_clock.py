"""The engine takes events far older than its clock without failing (decay is clamped)."""

from __future__ import annotations

from stream.engine import Engine, EngineConfig
from stream.models import CatalogItem, EventType, Interaction

YEAR = 365 * 86_400.0


def test_an_event_years_older_than_the_clock_is_learned_and_lists_still_build() -> None:
    engine = Engine(EngineConfig(seed=0))
    for n in range(4):
        engine.upsert_item(CatalogItem(f"i{n}", f"T{n}", "A", ("rock",), 200_000, 0.0))
    now = 60 * YEAR
    engine.learn(Interaction("e1", "u1", "i0", EventType.PLAY, now, ms_played=200_000))
    engine.learn(Interaction("e2", "u1", "i1", EventType.PLAY, now + 1, ms_played=200_000))
    # Decades before everything the engine has seen: once an OverflowError.
    engine.learn(Interaction("e3", "u1", "i2", EventType.PLAY, 0.0, ms_played=200_000))
    engine.learn(Interaction("e4", "u2", "i0", EventType.SKIP, 1.0, ms_played=1_000))

    assert engine.user_counts("u1") == {"play": 3, "skip": 0, "replay": 0}
    assert engine.user_counts("u2") == {"play": 0, "skip": 1, "replay": 0}
    listing = engine.recommend("u1", now=0.0)
    assert all(item.item_id not in {"i0", "i1", "i2"} for row in listing.rows for item in row.items)
    assert engine.recommend("u1", now=now + 2).rows
