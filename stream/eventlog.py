"""Event-log and catalog files: JSONL in the wire format, and plain CSV from outside data sets.

* **Event log (JSONL)** — one wire document per line, exactly
  :func:`stream.contracts.interaction_to_wire` (the same JSON as the Kafka messages).
* **Catalog (JSONL)** — one :func:`stream.contracts.catalog_item_to_wire` document per line.
* **CSV** — ``user,item,timestamp[,rating]`` for outside data sets (MovieLens
  ratings, Last.fm listening logs); see :func:`read_events` for how rows become events.

Files whose name ends in ``.gz`` are read and written gzip-compressed.

>>> import tempfile, pathlib
>>> from stream.models import EventType, Interaction
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> events = [Interaction("e1", "u-1", "t-1", EventType.PLAY, 1_767_225_600.0, ms_played=200_000)]
>>> write_events(folder / "events.jsonl", events)
1
>>> list(read_events(folder / "events.jsonl")) == events
True
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

from stream.contracts import (
    CATALOG_ITEM_SCHEMA,
    INTERACTION_SCHEMA,
    catalog_item_from_wire,
    catalog_item_to_wire,
    interaction_from_wire,
    interaction_to_wire,
    validate_document,
)
from stream.models import CatalogItem, EventType, Interaction

__all__ = [
    "EventLogError",
    "read_catalog",
    "read_events",
    "sorted_by_time",
    "write_catalog",
    "write_events",
]

PathLike = str | os.PathLike[str]
Format = Literal["jsonl", "csv"]

#: Numeric timestamps at or above this are epoch milliseconds (as seconds it is year 5138).
MILLISECONDS_FROM: Final = 100_000_000_000

#: Header names recognised for each CSV column (compared in lower case).
_COLUMN_NAMES: Final[dict[str, frozenset[str]]] = {
    "user": frozenset({"user", "user_id", "userid", "user id", "username", "listener"}),
    "item": frozenset(
        {"item", "item_id", "itemid", "item id", "movieid", "movie_id", "track", "track_id",
         "trackid", "song", "song_id", "traid"}
    ),
    "timestamp": frozenset(
        {"timestamp", "time", "ts", "datetime", "date", "occurred_at", "played_at"}
    ),
    "rating": frozenset({"rating", "score", "stars"}),
}  # fmt: skip
_POSITIONAL: Final = ("user", "item", "timestamp", "rating")


class EventLogError(ValueError):
    """A file that cannot be read as asked; says where and what.

    >>> str(EventLogError("events.csv", 17, "timestamp", "'abc' is not a number or ISO-8601 time"))
    "events.csv:17: timestamp: 'abc' is not a number or ISO-8601 time"
    """

    def __init__(self, path: str, line: int, field: str, problem: str) -> None:
        super().__init__(f"{path}:{line}: {field}: {problem}")
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem


# --------------------------------------------------------------------------- writing


def _open_binary(path: PathLike, mode: Literal["rb", "wb"]) -> IO[bytes]:
    if str(path).endswith(".gz"):
        return gzip.open(path, mode)
    return open(path, mode)


def write_events(path: PathLike, events: Iterable[Interaction]) -> int:
    """Write ``events`` as JSONL wire documents, one per line; return how many.

    ``events`` is consumed lazily, so a generator of millions streams through.

    Parameters
    ----------
    path
        The file to (over)write; ``.gz`` compresses.
    events
        What to write, in the order given.

    Returns
    -------
    int
        The number of lines written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from stream.models import EventType, Interaction
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
    >>> write_events(path, [Interaction("e1", "u1", "t1", EventType.SKIP, 60.0, ms_played=4000)])
    1
    >>> path.read_text()
    '{"event_id":"e1","type":"skip","user_id":"u1","item_id":"t1","occurred_at":"1970-01-01T00:01:00.000Z","ms_played":4000}\\n'
    """
    return _write_jsonl(path, map(interaction_to_wire, events))


def write_catalog(path: PathLike, items: Iterable[CatalogItem]) -> int:
    """Write catalog items as JSONL wire documents, one per line; return how many.

    The wire format carries the release *date*, so ``released_at`` is read back
    as midnight UTC of that day.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from stream.models import CatalogItem
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "catalog.jsonl"
    >>> item = CatalogItem("t-1", "Northern Lights", "Aurora Fields", ("ambient",), 201_000, 0.0)
    >>> write_catalog(path, [item])
    1
    >>> read_catalog(path) == [item]
    True
    """
    return _write_jsonl(path, map(catalog_item_to_wire, items))


def _write_jsonl(path: PathLike, documents: Iterable[dict[str, Any]]) -> int:
    """One JSON document per line; returns how many were written."""
    count = 0
    with _open_binary(path, "wb") as out:
        for document in documents:
            out.write(orjson.dumps(document))
            out.write(b"\n")
            count += 1
    return count


# --------------------------------------------------------------------------- JSONL


def _schema_problem(field: str | None, detail: str) -> tuple[str, str]:
    """fastjsonschema names the document ``data``; show paths relative to it."""
    path = (field or "data").removeprefix("data").removeprefix(".") or "(document)"
    problem = detail.removeprefix(f"{field} ") if field else detail
    if problem.startswith("data "):
        problem = problem.removeprefix("data ")
    return path, problem


def _jsonl_documents(path: PathLike, schema: str) -> Iterator[tuple[int, dict[str, object]]]:
    name = str(path)
    with _open_binary(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue  # a blank line (e.g. a trailing one) is not a row
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                raise EventLogError(name, number, "(document)", f"not JSON: {error}") from None
            if not isinstance(doc, dict):
                kind = type(doc).__name__
                raise EventLogError(name, number, "(document)", f"expected an object, got {kind}")
            problem = validate_document(schema, doc)
            if problem is not None:
                field, detail = _schema_problem(problem.field, problem.detail)
                raise EventLogError(name, number, field, detail)
            yield number, doc


def _read_jsonl_events(path: PathLike) -> Iterator[Interaction]:
    for number, doc in _jsonl_documents(path, INTERACTION_SCHEMA):
        try:
            yield interaction_from_wire(doc)
        except ValueError as error:  # a date-time the schema admits but Python cannot represent
            raise EventLogError(str(path), number, "occurred_at", str(error)) from None


def read_catalog(path: PathLike) -> list[CatalogItem]:
    """Read a catalog JSONL file (see :func:`write_catalog`), validating every line.

    Raises
    ------
    EventLogError
        Naming the line and the field path of the first invalid document.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "catalog.jsonl"
    >>> _ = path.write_text('{"item_id": "t-1", "title": "x", "artist": "y", "genres": [], '
    ...                     '"duration_ms": 0, "release_date": "2026-01-01"}\\n')
    >>> read_catalog(path)
    Traceback (most recent call last):
    ...
    stream.eventlog.EventLogError: ...catalog.jsonl:1: duration_ms: must be bigger than ... 1
    """
    items = []
    for number, doc in _jsonl_documents(path, CATALOG_ITEM_SCHEMA):
        try:
            items.append(catalog_item_from_wire(doc))
        except ValueError as error:
            raise EventLogError(str(path), number, "release_date", str(error)) from None
    return items


# --------------------------------------------------------------------------- CSV


def parse_timestamp(text: str) -> float:
    """A CSV timestamp -> epoch seconds.

    Numbers are epoch seconds, or epoch milliseconds from :data:`MILLISECONDS_FROM`
    (1e11) up; anything else must be ISO-8601, and a time without an offset is
    taken as UTC.

    >>> parse_timestamp("1767225600"), parse_timestamp("1767225600500")
    (1767225600.0, 1767225600.5)
    >>> parse_timestamp("2026-01-01T01:00:00+01:00"), parse_timestamp("2026-01-01 00:00:00")
    (1767225600.0, 1767225600.0)
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite time")
        return number / 1000 if abs(number) >= MILLISECONDS_FROM else number
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number or ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _columns_from_header(
    cells: Sequence[str],
) -> dict[str, int] | None:
    """Column positions when ``cells`` is a header row, else ``None``."""
    positions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        name = cell.strip().lower()
        for column, aliases in _COLUMN_NAMES.items():
            if name in aliases and column not in positions:
                positions[column] = index
    if not positions:
        return None
    if set(positions) >= {"user", "item", "timestamp"}:
        return positions
    # A header we cannot map by name: columns are in the documented order.
    return {column: index for index, column in enumerate(_POSITIONAL[: len(cells)])}


def _read_csv_events(
    path: PathLike,
    *,
    columns: Sequence[str | None] | None,
    skip_below: float,
    replay_from: float | None,
    duration_ms: int,
) -> Iterator[Interaction]:
    name = str(path)
    with _open_binary(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        first = text.readline()
        delimiter = "\t" if "\t" in first else ","
        rows = csv.reader(_chain_first(first, text), delimiter=delimiter)
        positions: dict[str, int] | None = None
        first_row = True
        if columns is not None:
            positions = _positions_from_columns(columns)
        for cells in rows:
            number = rows.line_num
            if not cells or all(not cell.strip() for cell in cells):
                continue  # a blank line is not a row
            if positions is None:
                positions = _columns_from_header(cells) if first_row else None
                first_row = False
                if positions is not None:
                    continue
                if not 3 <= len(cells) <= 4:
                    raise EventLogError(
                        name,
                        number,
                        "row",
                        f"expected user,item,timestamp[,rating], got {len(cells)} fields",
                    )
                positions = {column: i for i, column in enumerate(_POSITIONAL[: len(cells)])}
            yield _csv_event(name, number, cells, positions, skip_below, replay_from, duration_ms)


def _positions_from_columns(columns: Sequence[str | None]) -> dict[str, int]:
    positions = {column: i for i, column in enumerate(columns) if column}
    if set(positions) - set(_POSITIONAL) or not set(positions) >= {"user", "item", "timestamp"}:
        raise ValueError(
            "columns must name 'user', 'item', 'timestamp' (and may name 'rating'), "
            f"got {list(columns)}"
        )
    return positions


def _chain_first(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest


def _cell(
    name: str, number: int, cells: Sequence[str], positions: dict[str, int], column: str
) -> str:
    index = positions[column]
    if index >= len(cells):
        raise EventLogError(name, number, column, f"missing (the row has {len(cells)} fields)")
    value = cells[index].strip()
    if not value:
        raise EventLogError(name, number, column, "empty")
    return value


def _csv_event(
    name: str,
    number: int,
    cells: Sequence[str],
    positions: dict[str, int],
    skip_below: float,
    replay_from: float | None,
    duration_ms: int,
) -> Interaction:
    user = _cell(name, number, cells, positions, "user")
    item = _cell(name, number, cells, positions, "item")
    when = _cell(name, number, cells, positions, "timestamp")
    try:
        timestamp = parse_timestamp(when)
    except ValueError as error:
        raise EventLogError(name, number, "timestamp", str(error)) from None
    kind = EventType.PLAY
    if (
        "rating" in positions
        and positions["rating"] < len(cells)
        and cells[positions["rating"]].strip()
    ):
        text = cells[positions["rating"]].strip()
        try:
            rating = float(text)
        except ValueError:
            rating = math.nan
        if not math.isfinite(rating):
            raise EventLogError(name, number, "rating", f"{text!r} is not a number")
        if rating < skip_below:
            kind = EventType.SKIP
        elif replay_from is not None and rating >= replay_from:
            kind = EventType.REPLAY
    return Interaction(
        event_id=f"csv-{number}",
        user_id=user,
        item_id=item,
        type=kind,
        timestamp=timestamp,
        # A rated or logged item counts as fully played; a low rating as skipped at once.
        ms_played=0 if kind is EventType.SKIP else duration_ms,
        duration_ms=duration_ms,
    )


# --------------------------------------------------------------------------- reading events


def _detect_format(path: PathLike) -> Format:
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if last in {".csv", ".tsv"}:
        return "csv"
    with _open_binary(path, "rb") as sample:
        start = sample.read(4096).lstrip()
    return "jsonl" if start.startswith(b"{") else "csv"


def read_events(
    path: PathLike,
    *,
    format: Format | None = None,
    columns: Sequence[str | None] | None = None,
    skip_below: float = 3.0,
    replay_from: float | None = None,
    duration_ms: int = 210_000,
) -> Iterator[Interaction]:
    """Read interactions from a JSONL event log or a CSV file, lazily, **in file order**.

    Logs from outside are often not time-ordered; wrap them in :func:`sorted_by_time`
    before a prequential evaluation.

    **JSONL** lines are validated against the interaction-event schema.

    **CSV** has the columns ``user,item,timestamp[,rating]``, separated by commas or
    tabs (whichever the first line uses). A first line naming the columns (e.g.
    MovieLens's ``userId,movieId,rating,timestamp``) is a header: recognised names
    are mapped to columns, whatever their order. ``timestamp`` is epoch seconds,
    epoch milliseconds (numbers from 1e11 up) or ISO-8601; an ISO time without an
    offset is taken as UTC. Each row becomes one event with ``event_id``
    ``csv-<line>``, no row is dropped (blank lines are not rows):

    * without a rating, the row is a full play (a listening log);
    * with a rating (defaults suit a 1-5 scale): below ``skip_below`` (3) it is a skip,
      at or above ``replay_from`` (off by default) a replay, otherwise a play.

    Plays are given ``ms_played = duration_ms`` and skips ``ms_played = 0`` with
    ``duration_ms`` set, so completion is 1 and 0 whatever the catalog says.

    Parameters
    ----------
    path
        The file; ``.gz`` is decompressed.
    format
        ``"jsonl"`` or ``"csv"``; ``None`` decides by the extension (``.jsonl``,
        ``.ndjson``, ``.json`` / ``.csv``, ``.tsv``), else by whether the file starts
        with ``{``.
    columns
        CSV only: the name of each column in order, ``None`` for columns to ignore,
        for headerless files in another order — e.g. Last.fm-1K's
        ``("user", "timestamp", None, None, "item", None)``. Overrides header detection
        (a header line then raises, as its timestamp is not a time).
    skip_below, replay_from
        CSV rating thresholds (see above).
    duration_ms
        CSV only: the nominal length given to every event.

    Raises
    ------
    EventLogError
        On the first bad row, naming the file, the line and the field.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ratings.csv"
    >>> _ = path.write_text("userId,movieId,rating,timestamp\\n"
    ...                     "1,31,2.5,1260759144\\n1,1029,4,1260759179\\n")
    >>> [(e.event_id, e.user_id, e.item_id, e.type.value) for e in read_events(path)]
    [('csv-2', '1', '31', 'skip'), ('csv-3', '1', '1029', 'play')]
    >>> _ = path.write_text("u1,t1,2026-01-01T00:00:00Z\\nu1,t2,abc\\n")
    >>> list(read_events(path))
    Traceback (most recent call last):
    ...
    stream.eventlog.EventLogError: ...ratings.csv:2: timestamp: 'abc' is not a number or ISO-8601...
    """
    chosen = format or _detect_format(path)
    if chosen == "jsonl":
        if columns is not None:
            raise ValueError("columns only applies to CSV files")
        return _read_jsonl_events(path)
    if chosen == "csv":
        if duration_ms < 1:
            raise ValueError("duration_ms must be at least 1")
        if columns is not None:
            _positions_from_columns(columns)  # fail now, not at the first row
        return _read_csv_events(
            path,
            columns=columns,
            skip_below=skip_below,
            replay_from=replay_from,
            duration_ms=duration_ms,
        )
    raise ValueError(f"unknown format {format!r}; use 'jsonl' or 'csv'")


def sorted_by_time(events: Iterable[Interaction]) -> list[Interaction]:
    """Events in time order; ties keep their input order (a stable sort). Materialises the list.

    >>> from stream.models import EventType, Interaction
    >>> late = Interaction("a", "u", "i", EventType.PLAY, 20.0)
    >>> early = Interaction("b", "u", "i", EventType.PLAY, 10.0)
    >>> tie = Interaction("c", "u", "j", EventType.SKIP, 20.0)
    >>> [e.event_id for e in sorted_by_time([late, early, tie])]
    ['b', 'a', 'c']
    """
    return sorted(events, key=attrgetter("timestamp"))
