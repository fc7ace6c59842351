"""Wrapped: bounded monthly counters and the summary document."""

from __future__ import annotations

import pickle
import random
import tracemalloc

import orjson
import pytest

from stream.contracts import format_time, parse_time, validate_document
from stream.engine import Engine, EngineConfig
from stream.models import CatalogItem, EventType, Interaction
from stream.pipeline import Pipeline
from stream.wrapped import ListeningHistory, MonthCounters, _month_to_dict, month_of

NOV = parse_time("2026-11-10T12:00:00Z")
OCT = parse_time("2026-10-10T12:00:00Z")
SONG = CatalogItem("s1", "Song", "Band", ("rock", "indie"), 200_000, 0.0)
HIT = CatalogItem("s2", "Hit", "Star", ("pop",), 100_000, 0.0)


def _event(n, item, kind=EventType.PLAY, ms=200_000, at=NOV, user="u1"):
    return Interaction(f"e{n}", user, item, kind, at + n, ms_played=ms)


def test_summary_counts_minutes_plays_skips_and_tops_for_a_month_and_a_year():
    history = ListeningHistory()
    history.learn(_event(1, "s1"), SONG)
    history.learn(_event(2, "s1", EventType.REPLAY), SONG)
    history.learn(_event(3, "s2", ms=100_000), HIT)
    history.learn(_event(4, "s2", EventType.SKIP, ms=12_000), HIT)
    history.learn(_event(5, "s2", ms=100_000, at=OCT), HIT)
    nov = history.summary("u1", "2026-11")
    assert (nov["events"], nov["plays"], nov["replays"], nov["skips"]) == (4, 2, 1, 1)
    assert nov["minutes_played"] == round((400_000 + 100_000 + 12_000) / 60_000, 2)
    assert nov["skip_rate"] == 0.25
    assert nov["top_items"] == [
        {"id": "s1", "plays": 2, "minutes": 6.67},
        {"id": "s2", "plays": 1, "minutes": 1.87},
    ]
    assert [g["id"] for g in nov["top_genres"]] == ["indie", "rock", "pop"]
    year = history.summary("u1", "2026", top=1)
    assert year["events"] == 5
    assert year["top_items"] == [{"id": "s1", "plays": 2, "minutes": 6.67}]
    assert history.summary("u1", "2025")["events"] == 0
    assert history.summary("nobody", "2026")["skip_rate"] is None
    with pytest.raises(ValueError):
        history.summary("u1", "2026-13")


def test_memory_is_bounded_by_months_and_entries():
    history = ListeningHistory(max_months=2, max_entries=3)
    for n in range(10):
        history.learn(_event(n, f"i{n}"), None)
    month = history.summary("u1", "2026-11")
    assert month["events"] == 10, "totals count every event"
    assert len(month["top_items"]) == 3 and month["truncated"]
    sep = parse_time("2026-09-10T00:00:00Z")
    history.learn(_event(20, "x", at=OCT), None)
    history.learn(_event(21, "x", at=sep), None)  # older than the two months kept
    assert history.months("u1") == ["2026-10", "2026-11"]
    history.learn(_event(22, "y", at=parse_time("2026-12-01T00:00:00Z")), None)
    assert history.months("u1") == ["2026-11", "2026-12"]


def test_pipeline_wrapped_is_a_valid_document_from_learned_events():
    clock = parse_time("2026-11-22T18:00:00Z")
    pipeline = Pipeline(Engine(EngineConfig()), clock=lambda: clock)
    pipeline.ingest_catalog(
        orjson.dumps(
            {
                "item_id": "s1",
                "title": "Song",
                "artist": "Band",
                "genres": ["rock"],
                "duration_ms": 200_000,
                "release_date": "2026-01-01",
            }
        ),
        key=b"s1",
    )
    raw = orjson.dumps(
        {
            "event_id": "e1",
            "type": "play",
            "user_id": "u1",
            "item_id": "s1",
            "occurred_at": format_time(clock - 60),
            "ms_played": 180_000,
        }
    )
    pipeline.ingest_event(raw, key=b"u1", event_type=EventType.PLAY)
    answer = pipeline.answer_wrapped_request(
        b'{"user_id":"u1","period":"2026-11","request_id":"r1"}', key=b"u1"
    )
    assert validate_document("wrapped", answer) is None, answer
    assert answer["request_id"] == "r1" and answer["minutes_played"] == 3.0
    assert answer["top_artists"] == [{"id": "Band", "plays": 1, "minutes": 3.0}]
    bad = pipeline.answer_wrapped_request(b'{"user_id":"u1","period":"2026-11"}', key=b"u2")
    assert bad.reason == "key_mismatch"
    assert pipeline.stats()["wrapped"] == {"users": 1, "answered": 1}


# ---------------------------------------------------------------- compact storage


class ReferenceHistory:
    """The dict-of-dicts ListeningHistory the compact layout replaced: the oracle."""

    def __init__(self, max_months: int, max_entries: int) -> None:
        self.max_months, self.max_entries = max_months, max_entries
        self.users: dict[str, dict[str, MonthCounters]] = {}

    def learn(self, event: Interaction, info: CatalogItem | None) -> None:
        months = self.users.setdefault(event.user_id, {})
        key = month_of(event.timestamp)
        month = months.get(key)
        if month is None:
            if len(months) >= self.max_months and key < min(months):
                return
            month = months[key] = MonthCounters()
            while len(months) > self.max_months:
                del months[min(months)]
        month.events += 1
        month.ms += event.ms_played
        if event.type is EventType.SKIP:
            month.skips += 1
        elif event.type is EventType.REPLAY:
            month.replays += 1
        else:
            month.plays += 1
        played = int(event.type is not EventType.SKIP)
        self._count(month, month.items, event.item_id, played, event.ms_played)
        if info is not None:
            self._count(month, month.artists, info.artist, played, event.ms_played)
            for genre in info.genres:
                self._count(month, month.genres, genre, played, event.ms_played)

    def _count(self, month, entries, key, plays, ms) -> None:
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.max_entries:
                month.truncated = True
                return
            entry = entries[key] = [0, 0]
        entry[0] += plays
        entry[1] += ms

    def summary(self, user_id: str, period: str, top: int) -> dict:
        months = [
            m
            for key, m in self.users.get(user_id, {}).items()
            if key == period or key.startswith(period + "-")
        ]
        events, skips = sum(m.events for m in months), sum(m.skips for m in months)

        def tops(name: str) -> list[dict]:
            totals: dict[str, list[int]] = {}
            for m in months:
                for key, (plays, ms) in getattr(m, name).items():
                    total = totals.setdefault(key, [0, 0])
                    total[0] += plays
                    total[1] += ms
            ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:top]
            return [
                {"id": key, "plays": plays, "minutes": round(ms / 60_000, 2)}
                for key, (plays, ms) in ranked
            ]

        return {
            "user_id": user_id,
            "period": period,
            "events": events,
            "plays": sum(m.plays for m in months),
            "skips": skips,
            "replays": sum(m.replays for m in months),
            "minutes_played": round(sum(m.ms for m in months) / 60_000, 2),
            "skip_rate": None if not events else round(skips / events, 4),
            "top_items": tops("items"),
            "top_artists": tops("artists"),
            "top_genres": tops("genres"),
            "truncated": any(m.truncated for m in months),
        }


def _random_stream(seed: int, n: int) -> list[tuple[Interaction, CatalogItem | None]]:
    """Events of a few users over ~18 months, out of order at times, some without catalog."""
    rng = random.Random(seed)
    start = parse_time("2025-06-15T00:00:00Z")
    kinds = [EventType.PLAY, EventType.PLAY, EventType.SKIP, EventType.REPLAY]
    stream = []
    for number in range(n):
        at = start + 86_400.0 * (number * 540 / n + rng.uniform(-70, 5))  # late events too
        item = rng.randrange(30)
        info = CatalogItem(
            f"t{item}",
            "x",
            f"artist-{item % 7}",
            tuple(f"g{(item + k) % 9}" for k in range(item % 4)),
            200_000,
            0.0,
        )
        event = Interaction(
            f"e{number}",
            f"u{rng.randrange(4)}",
            f"t{item}",
            rng.choice(kinds),
            at,
            ms_played=rng.randrange(0, 300_000),
        )
        stream.append((event, None if item % 5 == 0 else info))
    return stream


def _periods(history: ListeningHistory, users: list[str]) -> set[str]:
    months = {month for user in users for month in history.months(user)}
    return months | {month[:4] for month in months} | {"2024", "2025-01"}


@pytest.mark.parametrize(("max_months", "max_entries"), [(13, 200), (3, 4), (1, 1)])
def test_compact_counters_agree_with_the_dict_reference(max_months, max_entries):
    compact = ListeningHistory(max_months, max_entries)
    reference = ReferenceHistory(max_months, max_entries)
    for event, info in _random_stream(seed=max_months, n=3_000):
        compact.learn(event, info)
        reference.learn(event, info)
    users = [f"u{n}" for n in range(4)] + ["nobody"]
    for user in users:
        assert compact.months(user) == sorted(reference.users.get(user, {}))
    for user in users:
        for period in _periods(compact, users):
            assert compact.summary(user, period, top=50) == reference.summary(user, period, 50)
    exported = compact.export_users(users)
    assert exported == {
        user: {key: _month_to_dict(month) for key, month in months.items()}
        for user, months in reference.users.items()
    }


def test_checkpoints_of_the_dict_layout_are_read_exactly():
    reference = ReferenceHistory(13, 3)
    for event, info in _random_stream(seed=7, n=500):
        reference.learn(event, info)
    # What a checkpoint of the previous ListeningHistory held: its __dict__, pickled.
    old_state = {"max_months": 13, "max_entries": 3, "users": reference.users}
    history = ListeningHistory.__new__(ListeningHistory)
    history.__setstate__(pickle.loads(pickle.dumps(old_state)))
    restored = pickle.loads(pickle.dumps(history))
    for user in reference.users:
        for period in _periods(restored, [user]):
            assert restored.summary(user, period, top=9) == reference.summary(user, period, 9)
    event, info = _random_stream(seed=8, n=1)[0]
    restored.learn(event, info)
    reference.learn(event, info)
    assert restored.summary(event.user_id, "2025", top=9) == reference.summary(
        event.user_id, "2025", 9
    )


def test_entries_are_exported_in_the_order_names_were_first_counted_by_anyone():
    history = ListeningHistory()
    at = parse_time("2026-11-10T12:00:00Z")
    names = [f"t{n}" for n in range(40)]
    for n, name in enumerate(names):
        history.learn(Interaction(f"a{n}", "u2", name, EventType.PLAY, at), None)
    shuffled = random.Random(1).sample(names, len(names))
    for n, name in enumerate(shuffled * 2):  # every entry found again
        history.learn(Interaction(f"b{n}", "u1", name, EventType.SKIP, at, ms_played=n), None)
    items = history.export_users(["u1"])["u1"]["2026-11"]["items"]
    assert list(items) == names
    assert items["t0"] == [0, shuffled.index("t0") * 2 + len(names)]


def test_a_light_user_costs_a_few_hundred_bytes():
    """Two events in a month: the user's counters, not dicts of lists of ints."""
    history = ListeningHistory()
    stream = [
        (_event(n, "s1" if n % 2 else "s2", user=f"u{n // 2}"), SONG if n % 2 else HIT)
        for n in range(4_000)
    ]
    for event, info in stream[:2]:
        history.learn(event, info)  # the shared names, once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for event, info in stream[2:]:
            history.learn(event, info)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_user = held / 1_999
    assert per_user < 400, f"{per_user:.0f} bytes per user"


def test_a_pipelines_wrapped_numbers_items_by_the_engines_rows_and_restores_with_it():
    clock = parse_time("2026-11-22T18:00:00Z")
    pipeline = Pipeline(Engine(EngineConfig()), clock=lambda: clock)
    for n, item in enumerate(["s1", "s2", "s1", "s3"]):
        raw = orjson.dumps(
            {
                "event_id": f"e{n}",
                "type": "play",
                "user_id": f"u{n % 2}",
                "item_id": item,
                "occurred_at": format_time(clock - 60 + n),
                "ms_played": 60_000 * (n + 1),
            }
        )
        pipeline.ingest_event(raw, key=f"u{n % 2}".encode(), event_type=EventType.PLAY)
    history = pipeline._history
    assert history._items is pipeline.engine.items  # no second list of the item ids
    assert history.__getstate__()["item_ids"] is None
    before = [history.summary(user, "2026-11") for user in ("u0", "u1")]
    assert [[e["id"] for e in summary["top_items"]] for summary in before] == [["s1"], ["s3", "s2"]]
    assert before[0]["top_items"][0] == {"id": "s1", "plays": 2, "minutes": 4.0}
    restored = Pipeline(Engine(EngineConfig()), clock=lambda: clock)
    restored.restore(pipeline.snapshot())
    assert restored._history._items is restored.engine.items
    assert [restored._history.summary(user, "2026-11") for user in ("u0", "u1")] == before


def test_a_history_pickled_when_items_shared_the_names_vocabulary_is_renumbered_exactly():
    from array import array

    from stream.engine.state import ItemIndex

    # Hand-written counters of that layout: one user, November 2026, vocabulary
    # ["s1", "Band", "rock", "s2"]. Keys 3 * number + kind: s1 0, Band 4, rock 8, s2 9.
    month = 2026 * 12 + 10
    counters = array("q", [0, 4, 8, 9])  # keys, sorted
    counters.extend([2, 360_000, 2, 360_000, 2, 360_000, 1, 60_000])  # plays, ms of each
    counters.extend([3, 3, 0, 0, 420_000, 2, 1, 1, month * 2])  # the month's trailer
    old_state = {
        "max_months": 13,
        "max_entries": 200,
        "users": {"u1": counters},
        "names": ["s1", "Band", "rock", "s2"],
    }
    history = ListeningHistory.__new__(ListeningHistory)
    history.__setstate__(pickle.loads(pickle.dumps(old_state)))
    index = ItemIndex()
    for item_id in ("x", "s2", "y"):  # rows unlike the old numbers, s2 before s1
        index.add(item_id)
    history.attach_items(index)
    assert index.ids == ["x", "s2", "y", "s1"]
    summary = history.summary("u1", "2026-11")
    assert summary["events"] == 3 and summary["minutes_played"] == 7.0
    assert summary["top_items"] == [
        {"id": "s1", "plays": 2, "minutes": 6.0},
        {"id": "s2", "plays": 1, "minutes": 1.0},
    ]
    assert summary["top_artists"] == [{"id": "Band", "plays": 2, "minutes": 6.0}]
    assert summary["top_genres"] == [{"id": "rock", "plays": 2, "minutes": 6.0}]
    history.learn(_event(9, "s2", ms=120_000, at=parse_time("2026-11-20T00:00:00Z")), None)
    assert history.summary("u1", "2026-11")["top_items"][1] == {
        "id": "s2",
        "plays": 2,
        "minutes": 3.0,
    }
