"""The wire format: JSON bytes on Kafka <-> the domain types of :mod:`stream.models`.

Validators are compiled (fastjsonschema) from the JSON Schema documents in
``schemas/``, the single source of truth that upstream teams in other languages
validate against too.

Decoding never raises on bad input: it returns a :class:`Rejection` with a
machine-readable reason code and a detail for a person, which the ingest agent
turns into a dead letter.

>>> raw = (b'{"event_id":"e1","type":"play","user_id":"u1","item_id":"i1",'
...        b'"occurred_at":"2026-11-22T18:00:00Z","ms_played":1000}')
>>> decode_interaction(raw, expected_type=EventType.PLAY, key=b"u1")
Interaction(event_id='e1', user_id='u1', item_id='i1', type=<EventType.PLAY: 'play'>, ...)
>>> decode_interaction(b'{"event_id":', expected_type=EventType.PLAY, key=b"u1").reason
<Reason.INVALID_JSON: 'invalid_json'>
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from importlib import resources
from typing import Any, Final

import fastjsonschema
import orjson

from stream.models import (
    CatalogItem,
    DeletionRequest,
    EventType,
    Interaction,
    RecommendationList,
    RecommendedItem,
    Row,
    Source,
)

INTERACTION_SCHEMA: Final = "interaction-event"
CATALOG_ITEM_SCHEMA: Final = "catalog-item"
RECOMMENDATION_LIST_SCHEMA: Final = "recommendation-list"
DEAD_LETTER_SCHEMA: Final = "dead-letter"
DELETION_REQUEST_SCHEMA: Final = "deletion-request"
CURATION_RULE_SCHEMA: Final = "curation-rule"
WRAPPED_REQUEST_SCHEMA: Final = "wrapped-request"
WRAPPED_SCHEMA: Final = "wrapped"
ALL_SCHEMAS: Final = (
    INTERACTION_SCHEMA,
    CATALOG_ITEM_SCHEMA,
    RECOMMENDATION_LIST_SCHEMA,
    DEAD_LETTER_SCHEMA,
    DELETION_REQUEST_SCHEMA,
    CURATION_RULE_SCHEMA,
    WRAPPED_REQUEST_SCHEMA,
    WRAPPED_SCHEMA,
)

#: Larger payloads are rejected before parsing (a real event is ~300 bytes).
DEFAULT_MAX_EVENT_BYTES: Final = 16 * 1024


class Reason(StrEnum):
    """Why a message was rejected: the ``reason`` of its dead letter (one code per cause).

    Listed in the order the checks run; a message with several faults gets the
    first. ``schemas/dead-letter.schema.json`` enumerates the same codes.
    """

    #: no value at all (null); on the catalog topic a keyed null is a withdrawal instead
    TOMBSTONE = "tombstone"
    #: more than the configured maximum bytes, refused before parsing
    OVERSIZED = "oversized"
    #: a value of zero bytes
    EMPTY_PAYLOAD = "empty_payload"
    NOT_UTF8 = "not_utf8"
    #: not one JSON document (truncated, NaN, a byte-order mark, trailing bytes, too deep...)
    INVALID_JSON = "invalid_json"
    #: valid JSON, but an array, string, number or null instead of an object
    NOT_AN_OBJECT = "not_an_object"
    #: the object breaks the schema; ``field`` is the path of the offending field
    SCHEMA_VIOLATION = "schema_violation"
    #: an event whose ``type`` belongs to another topic (a skip on plays)
    WRONG_TOPIC = "wrong_topic"
    #: the message has no key (or an empty one)
    MISSING_KEY = "missing_key"
    #: the key is not the event's user_id (the catalog item's item_id)
    KEY_MISMATCH = "key_mismatch"
    #: more played than the item lasts, by the event's own duration_ms
    MS_PLAYED_OVER_DURATION = "ms_played_over_duration"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    #: an item the catalog never announced or withdrew (only when configured to reject)
    UNKNOWN_ITEM = "unknown_item"
    #: an event of a user who was forgotten, that occurred at or before the deletion
    USER_FORGOTTEN = "user_forgotten"
    #: an event_id already learned
    DUPLICATE = "duplicate"
    #: the engine raised on a valid message (a bug; replay it once fixed)
    PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was not accepted. ``field`` is the path of the bad field, if any."""

    reason: Reason
    detail: str
    field: str | None = None


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema document ``schemas/<name>.schema.json``."""
    text = resources.files("schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def validator(name: str) -> Any:
    """A compiled validator for one schema; raises ``fastjsonschema.JsonSchemaException``."""
    return fastjsonschema.compile(load_schema(name))


# --------------------------------------------------------------------------- times


def parse_time(text: str) -> float:
    """RFC 3339 with an offset -> epoch seconds. Naive times are refused.

    >>> parse_time("1970-01-01T00:01:00+00:00")
    60.0
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without an offset: {text!r}")
    return moment.timestamp()


def format_time(seconds: float) -> str:
    """Epoch seconds -> RFC 3339 in UTC with milliseconds.

    >>> format_time(60.5)
    '1970-01-01T00:01:00.500Z'
    """
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _date_to_seconds(text: str) -> float:
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _seconds_to_date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


# --------------------------------------------------------------------------- events


def interaction_from_wire(doc: dict[str, Any]) -> Interaction:
    """Build an :class:`Interaction` from an already validated wire document."""
    source = doc.get("source")
    duration_ms = doc.get("duration_ms")
    return Interaction(
        event_id=doc["event_id"],
        user_id=doc["user_id"],
        item_id=doc["item_id"],
        type=EventType(doc["type"]),
        timestamp=parse_time(doc["occurred_at"]),
        # JSON Schema's "integer" admits 1000.0: keep ints ints
        ms_played=int(doc["ms_played"]),
        duration_ms=None if duration_ms is None else int(duration_ms),
        device=doc.get("device"),
        country=doc.get("country"),
        source=(
            Source(source["list_id"], source["row"], int(source["position"])) if source else None
        ),
    )


def interaction_to_wire(event: Interaction) -> dict[str, Any]:
    """The wire document for an :class:`Interaction` (optional fields left out when unset)."""
    doc: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type.value,
        "user_id": event.user_id,
        "item_id": event.item_id,
        "occurred_at": format_time(event.timestamp),
        "ms_played": event.ms_played,
    }
    if event.duration_ms is not None:
        doc["duration_ms"] = event.duration_ms
    if event.device is not None:
        doc["device"] = event.device
    if event.country is not None:
        doc["country"] = event.country
    if event.source is not None:
        doc["source"] = {
            "list_id": event.source.list_id,
            "row": event.source.row,
            "position": event.source.position,
        }
    return doc


def encode_interaction(event: Interaction) -> bytes:
    return orjson.dumps(interaction_to_wire(event))


def _schema_rejection(error: fastjsonschema.JsonSchemaException) -> Rejection:
    """The field path names the missing or unexpected property, not just its object.

    >>> validate_document(INTERACTION_SCHEMA, {"event_id": "e1"}).field
    'data.type'
    """
    path = getattr(error, "name", None) or None
    rule = getattr(error, "rule", None)
    value = getattr(error, "value", None)
    if path and isinstance(value, dict):
        if rule == "required":
            missing = [name for name in error.rule_definition if name not in value]
            path = f"{path}.{missing[0]}" if missing else path
        elif rule == "additionalProperties":
            known = (getattr(error, "definition", None) or {}).get("properties", {})
            extra = [name for name in value if name not in known]
            path = f"{path}.{extra[0]}" if extra else path
    return Rejection(Reason.SCHEMA_VIOLATION, str(error.message), path)


def validate_document(name: str, doc: Any) -> Rejection | None:
    """``None`` when ``doc`` is valid against schema ``name``, else why not."""
    try:
        validator(name)(doc)
    except fastjsonschema.JsonSchemaException as error:
        return _schema_rejection(error)
    return None


def decode_json(raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Any:
    """Parse one message's bytes, or return the :class:`Rejection` saying why not.

    The size is checked before anything else looks at the bytes.
    """
    if raw is None:
        return Rejection(Reason.TOMBSTONE, "message has no value (a tombstone)")
    if len(raw) > max_bytes:
        return Rejection(Reason.OVERSIZED, f"{len(raw)} bytes, the limit is {max_bytes}")
    if not raw:
        return Rejection(Reason.EMPTY_PAYLOAD, "message value is zero bytes")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection(Reason.NOT_UTF8, f"not UTF-8: {error.reason} at byte {error.start}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return Rejection(Reason.INVALID_JSON, str(error))


def decode_document(
    raw: bytes | None, schema: str, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> dict[str, Any] | Rejection:
    """Parse one message and validate it against ``schema``: the document, or why not."""
    doc = decode_json(raw, max_bytes=max_bytes)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        kind = "null" if doc is None else type(doc).__name__
        return Rejection(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")
    problem = validate_document(schema, doc)
    return doc if problem is None else problem


def _check_key(key: bytes | None, expected: str, field: str) -> Rejection | None:
    """``None`` when the message key is ``expected`` (UTF-8), else why not."""
    if not key:
        return Rejection(Reason.MISSING_KEY, "the message has no key", field)
    if key != expected.encode("utf-8"):
        shown = key.decode("utf-8", "replace")
        return Rejection(
            Reason.KEY_MISMATCH,
            f"message key {shown!r} is not the {field.rsplit('.', 1)[-1]} {expected!r}",
            field,
        )
    return None


def decode_keyed_document(
    raw: bytes | None, schema: str, *, key: bytes | None, key_field: str, max_bytes: int
) -> dict[str, Any] | Rejection:
    """:func:`decode_document`, then the message key must be the document's ``key_field``.

    >>> decode_keyed_document(b'{"user_id":"u1","period":"2026"}', "wrapped-request",
    ...                       key=b"u2", key_field="user_id", max_bytes=1024).reason
    <Reason.KEY_MISMATCH: 'key_mismatch'>
    """
    doc = decode_document(raw, schema, max_bytes=max_bytes)
    if isinstance(doc, Rejection):
        return doc
    wrong_key = _check_key(key, doc[key_field], f"data.{key_field}")
    return doc if wrong_key is None else wrong_key


def decode_interaction(
    raw: bytes | None,
    *,
    expected_type: EventType,
    key: bytes | None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Interaction | Rejection:
    """Decode and validate one event from the topic of ``expected_type``.

    The message key must be the event's ``user_id``: partitioning by user is what
    keeps each user's events in order on one worker.
    """
    doc = decode_document(raw, INTERACTION_SCHEMA, max_bytes=max_bytes)
    if isinstance(doc, Rejection):
        return doc
    if doc["type"] != expected_type.value:
        return Rejection(
            Reason.WRONG_TOPIC,
            f"a {doc['type']!r} event on the topic for {expected_type.value!r} events",
            "data.type",
        )
    wrong_key = _check_key(key, doc["user_id"], "data.user_id")
    if wrong_key is not None:
        return wrong_key
    duration_ms = doc.get("duration_ms")
    if duration_ms is not None and doc["ms_played"] > duration_ms:
        return Rejection(
            Reason.MS_PLAYED_OVER_DURATION,
            f"ms_played {doc['ms_played']} is more than duration_ms {duration_ms}",
            "data.ms_played",
        )
    try:
        return interaction_from_wire(doc)
    except ValueError as error:  # e.g. a date-time the regex admits but Python cannot represent
        return Rejection(Reason.SCHEMA_VIOLATION, str(error), "data.occurred_at")


# --------------------------------------------------------------------------- catalog


def catalog_item_from_wire(doc: dict[str, Any]) -> CatalogItem:
    return CatalogItem(
        item_id=doc["item_id"],
        title=doc["title"],
        artist=doc["artist"],
        genres=tuple(doc["genres"]),
        duration_ms=doc["duration_ms"],
        released_at=_date_to_seconds(doc["release_date"]),
    )


def catalog_item_to_wire(item: CatalogItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "artist": item.artist,
        "genres": list(item.genres),
        "duration_ms": item.duration_ms,
        "release_date": _seconds_to_date(item.released_at),
    }


def encode_catalog_item(item: CatalogItem) -> bytes:
    return orjson.dumps(catalog_item_to_wire(item))


def decode_catalog_item(
    raw: bytes | None, *, key: bytes | None, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> CatalogItem | Rejection:
    doc = decode_keyed_document(
        raw, CATALOG_ITEM_SCHEMA, key=key, key_field="item_id", max_bytes=max_bytes
    )
    if isinstance(doc, Rejection):
        return doc
    try:
        return catalog_item_from_wire(doc)
    except ValueError as error:
        return Rejection(Reason.SCHEMA_VIOLATION, str(error), "data.release_date")


# --------------------------------------------------------------------------- lists


def _list_document(rec: RecommendationList, rows: list[Any]) -> dict[str, Any]:
    """A list's wire document around ``rows`` (each row's wire form, as dicts or encoded)."""
    doc: dict[str, Any] = {
        "user_id": rec.user_id,
        "list_id": rec.list_id,
        "generated_at": format_time(rec.generated_at),
        "arm": rec.arm,
        "model": rec.model,
        "based_on_events": rec.based_on_events,
        "last_event_id": rec.last_event_id,
        "last_event_at": None if rec.last_event_at is None else format_time(rec.last_event_at),
        "rows": rows,
    }
    if rec.experiment is not None:
        doc["experiment"] = rec.experiment
    return doc


def recommendation_list_to_wire(rec: RecommendationList) -> dict[str, Any]:
    return _list_document(rec, [row_to_wire(row) for row in rec.rows])


def row_to_wire(row: Row) -> dict[str, Any]:
    return {
        "row_id": row.row_id,
        "title": row.title,
        "items": [
            {"item_id": item.item_id, "score": round(item.score, 6), "reason": item.reason}
            for item in row.items
        ],
    }


def exact_size(encoded: bytes) -> bytes:
    """A copy of ``encoded`` in a buffer of its own size, for bytes kept for long.

    orjson returns its output in the buffer it grew while writing (the next power
    of two, at least 4 KiB): a 4.5 KB list kept as is holds 8 KiB.

    >>> exact_size(b'{"a":1}')
    b'{"a":1}'
    """
    return memoryview(encoded).tobytes()


def encoded_row(row: Row) -> orjson.Fragment:
    """A row's JSON, encoded on first use and kept on the row.

    A row is immutable, and quick lists carry most rows of a user's previous list
    over unchanged: each is encoded once, not once per list.

    >>> row = Row("hot", "Hot", (RecommendedItem("t1", 0.1234567, "r"),))
    >>> encoded_row(row) is encoded_row(row)
    True
    >>> orjson.dumps(encoded_row(row))
    b'{"row_id":"hot","title":"Hot","items":[{"item_id":"t1","score":0.123457,"reason":"r"}]}'
    """
    encoded = row.encoded
    if encoded is None:
        encoded = orjson.Fragment(exact_size(orjson.dumps(row_to_wire(row))))
        object.__setattr__(row, "encoded", encoded)  # a cache on a frozen dataclass
    return encoded


def encode_recommendation_list(rec: RecommendationList) -> bytes:
    """The wire bytes of a list: :func:`recommendation_list_to_wire`, encoded.

    >>> rec = RecommendationList("u1", "u1:1", 0.0, (Row("trending", "T", ()),))
    >>> encode_recommendation_list(rec) == orjson.dumps(recommendation_list_to_wire(rec))
    True
    """
    return orjson.dumps(_list_document(rec, [encoded_row(row) for row in rec.rows]))


def recommendation_list_from_wire(doc: dict[str, Any]) -> RecommendationList:
    last_at = doc.get("last_event_at")
    return RecommendationList(
        user_id=doc["user_id"],
        list_id=doc["list_id"],
        generated_at=parse_time(doc["generated_at"]),
        rows=tuple(
            Row(
                row["row_id"],
                row["title"],
                tuple(RecommendedItem(i["item_id"], i["score"], i["reason"]) for i in row["items"]),
            )
            for row in doc["rows"]
        ),
        arm=doc["arm"],
        model=doc["model"],
        experiment=doc.get("experiment"),
        based_on_events=doc["based_on_events"],
        last_event_id=doc.get("last_event_id"),
        last_event_at=None if last_at is None else parse_time(last_at),
    )


def decode_recommendation_list(raw: bytes) -> RecommendationList:
    """Strict: raises on anything that is not a valid list (it is our own output)."""
    doc = orjson.loads(raw)
    validator(RECOMMENDATION_LIST_SCHEMA)(doc)
    return recommendation_list_from_wire(doc)


# --------------------------------------------------------------------------- deletions


def deletion_request_from_wire(doc: dict[str, Any]) -> DeletionRequest:
    return DeletionRequest(
        user_id=doc["user_id"],
        requested_at=parse_time(doc["requested_at"]),
        request_id=doc.get("request_id"),
        reason=doc.get("reason"),
    )


def deletion_request_to_wire(request: DeletionRequest) -> dict[str, Any]:
    """The wire document (optional fields left out when unset)."""
    doc: dict[str, Any] = {
        "user_id": request.user_id,
        "requested_at": format_time(request.requested_at),
    }
    if request.request_id is not None:
        doc["request_id"] = request.request_id
    if request.reason is not None:
        doc["reason"] = request.reason
    return doc


def encode_deletion_request(request: DeletionRequest) -> bytes:
    return orjson.dumps(deletion_request_to_wire(request))


def decode_deletion_request(
    raw: bytes | None, *, key: bytes | None, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> DeletionRequest | Rejection:
    """Decode and validate one message of the deletions topic (key = the user_id).

    >>> decode_deletion_request(
    ...     b'{"user_id":"u1","requested_at":"1970-01-01T00:01:00Z"}', key=b"u1"
    ... )
    DeletionRequest(user_id='u1', requested_at=60.0, request_id=None, reason=None)
    >>> decode_deletion_request(b'{"user_id":"u1"}', key=b"u1").field
    'data.requested_at'
    """
    doc = decode_keyed_document(
        raw, DELETION_REQUEST_SCHEMA, key=key, key_field="user_id", max_bytes=max_bytes
    )
    if isinstance(doc, Rejection):
        return doc
    try:
        return deletion_request_from_wire(doc)
    except ValueError as error:
        return Rejection(Reason.SCHEMA_VIOLATION, str(error), "data.requested_at")


# --------------------------------------------------------------------------- wrapped


@dataclass(frozen=True, slots=True)
class WrappedRequest:
    """Asks for ``user_id``'s Wrapped for ``period`` (``YYYY-MM`` or ``YYYY``)."""

    user_id: str
    period: str
    top: int = 5
    request_id: str | None = None


def decode_wrapped_request(
    raw: bytes | None, *, key: bytes | None, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> WrappedRequest | Rejection:
    """Decode and validate a request from ``wrapped-requests``; the key must be its user_id.

    >>> decode_wrapped_request(b'{"user_id":"u1","period":"2026-11"}', key=b"u1")
    WrappedRequest(user_id='u1', period='2026-11', top=5, request_id=None)
    """
    doc = decode_keyed_document(
        raw, WRAPPED_REQUEST_SCHEMA, key=key, key_field="user_id", max_bytes=max_bytes
    )
    if isinstance(doc, Rejection):
        return doc
    return WrappedRequest(doc["user_id"], doc["period"], doc.get("top", 5), doc.get("request_id"))


# --------------------------------------------------------------------------- dead letters


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def encode_dead_letter(
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    rejected_at: float,
) -> bytes:
    """A dead letter keeps the original bytes so the message can be fixed and replayed."""
    return orjson.dumps(
        {
            "reason": str(rejection.reason),
            "detail": rejection.detail,
            "field": rejection.field,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key_base64": _b64(key),
            "value_base64": _b64(value),
            "rejected_at": format_time(rejected_at),
        }
    )
