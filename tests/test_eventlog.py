"""Event-log and catalog files: JSONL round trips, CSV import, clear errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contracts import interaction_to_wire
from stream.eventlog import (
    EventLogError,
    parse_timestamp,
    read_catalog,
    read_events,
    sorted_by_time,
    write_catalog,
    write_events,
)
from stream.models import CatalogItem, EventType, Interaction, Source
from stream.simulator import World, WorldConfig

START = 1_767_225_600.0  # 2026-01-01T00:00Z


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=40, n_items=150, seed=21))


# --------------------------------------------------------------------------- JSONL


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_simulated_events_round_trip_exactly(world: World, tmp_path: Path, name: str) -> None:
    events = list(world.events(2000))
    shown = world.respond(
        "u-00001", "t-00002", now=START, device="tv", source=Source("l-1", "discover", 4)
    )
    events.append(shown)
    path = tmp_path / name
    assert write_events(path, iter(events)) == len(events)
    assert list(read_events(path)) == events


def test_each_line_is_exactly_the_wire_json(tmp_path: Path) -> None:
    event = Interaction(
        "e-1", "u-1", "t-1", EventType.REPLAY, START + 0.25, 1000, 2000, "car", "SE"
    )
    path = tmp_path / "events.jsonl"
    write_events(path, [event, event])
    lines = path.read_bytes().splitlines()
    assert lines == [orjson.dumps(interaction_to_wire(event))] * 2


def test_catalog_round_trips(world: World, tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    assert write_catalog(path, world.catalog) == len(world.catalog)
    assert read_catalog(path) == list(world.catalog)


def _jsonl(tmp_path: Path, *docs: object) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(doc) + b"\n" for doc in docs))
    return path


GOOD = {
    "event_id": "e1",
    "type": "play",
    "user_id": "u1",
    "item_id": "t1",
    "occurred_at": "2026-01-01T00:00:00Z",
    "ms_played": 5,
}


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({**GOOD, "ms_played": -1}, "ms_played", "bigger than or equal to 0"),
        ({**GOOD, "occurred_at": "2026-01-01T00:00:00"}, "occurred_at", "date-time"),
        ({**GOOD, "source": {"list_id": "l", "row": "r", "position": -2}}, "source.position", "0"),
        ({k: v for k, v in GOOD.items() if k != "item_id"}, "item_id", "item_id"),
        ({**GOOD, "type": "pause"}, "type", "must be one of"),
    ],
)
def test_invalid_jsonl_lines_name_the_line_and_field(
    tmp_path: Path, bad: dict[str, object], field: str, words: str
) -> None:
    path = _jsonl(tmp_path, GOOD, GOOD, bad)
    with pytest.raises(EventLogError) as caught:
        list(read_events(path))
    error = caught.value
    assert (error.line, error.field) == (3, field)
    assert str(error).startswith(f"{path}:3: {field}: ")
    assert words in error.problem


def test_broken_json_and_non_objects_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(GOOD) + b"\n{oops\n")
    with pytest.raises(EventLogError, match=r"events.jsonl:2: \(document\): not JSON"):
        list(read_events(path))
    path.write_bytes(b"[1, 2]\n")
    with pytest.raises(EventLogError, match="expected an object, got list"):
        list(read_events(path))


def test_blank_lines_are_not_rows_and_reading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n" + orjson.dumps(GOOD) + b"\n\n" + orjson.dumps(GOOD) + b"\n\n{bad")
    reader = read_events(path)
    assert [e.event_id for e in itertools.islice(reader, 2)] == ["e1", "e1"]
    with pytest.raises(EventLogError, match=":6:"):
        next(reader)


def test_bad_catalog_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    item = CatalogItem("t-1", "Song", "Band", ("rock",), 200_000, START)
    write_catalog(path, [item])
    with path.open("ab") as out:
        out.write(b'{"item_id": "t-2", "title": "x", "artist": "y", "genres": "rock", ')
        out.write(b'"duration_ms": 1000, "release_date": "2026-01-01"}\n')
    with pytest.raises(EventLogError) as caught:
        read_catalog(path)
    assert (caught.value.line, caught.value.field) == (2, "genres")


def test_format_is_detected_from_content_without_a_known_extension(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_bytes(orjson.dumps(GOOD) + b"\n")
    assert [e.event_id for e in read_events(path)] == ["e1"]
    path.write_text("u1,t1,60\n")
    assert [e.event_id for e in read_events(path)] == ["csv-1"]
    assert [e.event_id for e in read_events(path, format="csv")] == ["csv-1"]
    with pytest.raises(ValueError, match="unknown format"):
        read_events(path, format="xml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CSV


def test_csv_without_header_or_rating_is_full_plays_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "listens.csv"
    path.write_text("u1,t1,1767225660\nu2,t2,1767225600\n")
    events = list(read_events(path, duration_ms=180_000))
    assert [(e.event_id, e.user_id, e.item_id, e.timestamp) for e in events] == [
        ("csv-1", "u1", "t1", START + 60),
        ("csv-2", "u2", "t2", START),
    ]
    assert all(e.type is EventType.PLAY and e.completion == 1.0 for e in events)
    assert events[0].duration_ms == 180_000 and events[0].device is None


def test_csv_header_is_mapped_by_name_movielens_style(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3,1260759179\n"
        "2,10,5,1260759185\n"
    )
    events = list(read_events(path, replay_from=5))
    assert [(e.event_id, e.user_id, e.item_id, e.type.value) for e in events] == [
        ("csv-2", "1", "31", "skip"),
        ("csv-3", "1", "1029", "play"),
        ("csv-4", "2", "10", "replay"),
    ]
    assert events[0].ms_played == 0 and events[0].completion == 0.0
    assert events[0].timestamp == 1260759144.0


@pytest.mark.parametrize(
    ("rating", "kind"),
    [("1", EventType.SKIP), ("2.9", EventType.SKIP), ("3", EventType.PLAY), ("5", EventType.PLAY)],
)
def test_default_rating_thresholds_suit_a_1_to_5_scale(
    tmp_path: Path, rating: str, kind: EventType
) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(f"u1,t1,1767225600,{rating}\n")
    assert next(read_events(path)).type is kind


def test_custom_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("u,i,0,6\nu,i,0,7\nu,i,0,9\n")
    kinds = [e.type.value for e in read_events(path, skip_below=7, replay_from=9)]
    assert kinds == ["skip", "play", "replay"]


def test_tab_separated_and_time_formats(tmp_path: Path) -> None:
    path = tmp_path / "listens.tsv"
    path.write_text(
        "user\titem\ttimestamp\n"
        "u1\tt1\t1767225600000\n"  # epoch milliseconds
        "u1\tt2\t2026-01-01T01:00:00+01:00\n"  # ISO with an offset
        "u1\tt3\t2026-01-01T00:00:30Z\n"
        "u1\tt4\t2026-01-01 00:01:00\n"  # naive: taken as UTC
        "u1\tt5\t1767225600.5\n"
    )
    times = [e.timestamp for e in read_events(path)]
    assert times == [START, START, START + 30, START + 60, START + 0.5]


def test_columns_for_headerless_files_in_another_order(tmp_path: Path) -> None:
    path = tmp_path / "lastfm.tsv"
    path.write_text(
        "user_000001\t2009-05-04T23:08:57Z\tart-1\tDeep Dish\ttr-1\tFirst Song\n"
        "user_000001\t2009-05-04T13:54:10Z\tart-2\tUmmet Ozcan\ttr-2\tSecond Song\n"
    )
    columns = ("user", "timestamp", None, None, "item", None)
    events = list(read_events(path, columns=columns))
    assert [(e.user_id, e.item_id) for e in events] == [
        ("user_000001", "tr-1"),
        ("user_000001", "tr-2"),
    ]
    assert events[0].timestamp == parse_timestamp("2009-05-04T23:08:57+00:00")
    with pytest.raises(ValueError, match="columns must name"):
        read_events(path, columns=("user", "item"))


@pytest.mark.parametrize(
    ("content", "line", "field", "problem"),
    [
        ("u1,t1,60\nu1,t2,abc\n", 2, "timestamp", "'abc' is not a number or ISO-8601 time"),
        ("u1,t1,60,good\n", 1, "rating", "'good' is not a number"),
        ("u1,t1,60,nan\n", 1, "rating", "'nan' is not a number"),
        ("u1,,60\n", 1, "item", "empty"),
        ("u1,t1\n", 1, "row", "expected user,item,timestamp[,rating], got 2 fields"),
        ("u1,t1,60,5,extra\n", 1, "row", "expected user,item,timestamp[,rating], got 5 fields"),
        ("u1,t1,60\nu2,t2\n", 2, "timestamp", "missing (the row has 2 fields)"),
        ("a,b,c\n", 1, "timestamp", "'c' is not a number or ISO-8601 time"),  # not a header
        ("u1,t1,inf\n", 1, "timestamp", "'inf' is not a finite time"),
    ],
)
def test_bad_csv_rows_raise_naming_file_line_and_field(
    tmp_path: Path, content: str, line: int, field: str, problem: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(content)
    with pytest.raises(EventLogError) as caught:
        list(read_events(path))
    assert str(caught.value) == f"{path}:{line}: {field}: {problem}"


def test_no_row_is_dropped(tmp_path: Path) -> None:
    rows = [f"u{n % 7},t{n % 11},{1767225600 + n},{1 + n % 5}" for n in range(500)]
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,timestamp,rating\n" + "\n".join(rows) + "\n")
    events = list(read_events(path))
    assert len(events) == 500
    assert [e.event_id for e in events] == [f"csv-{n + 2}" for n in range(500)]


# --------------------------------------------------------------------------- ordering


def test_sorted_by_time_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "listens.csv"
    path.write_text("u1,a,30\nu2,b,10\nu3,c,30\nu4,d,20\nu5,e,10\n")
    ordered = sorted_by_time(read_events(path))
    assert [e.item_id for e in ordered] == ["b", "e", "d", "a", "c"]


@settings(max_examples=60, deadline=None)
@given(
    millis=st.integers(min_value=0, max_value=4_000_000_000_000),
    played=st.integers(min_value=0, max_value=86_400_000),
    kind=st.sampled_from(list(EventType)),
    # ids carry no control characters (Cc)
    user=st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
    ),
)
def test_any_wire_valid_event_round_trips(
    tmp_path_factory: pytest.TempPathFactory, millis: int, played: int, kind: EventType, user: str
) -> None:
    event = Interaction("e", user, "t", kind, millis / 1000, played, None, None, "GB")
    path = tmp_path_factory.mktemp("rt") / "events.jsonl"
    write_events(path, [event])
    assert list(read_events(path)) == [event]
