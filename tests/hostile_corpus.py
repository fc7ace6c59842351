"""Hostile input: named kinds of bad messages, each with the dead letter it must produce.

Shared by the pure test (``test_hostile_input.py``, through :class:`stream.pipeline.Pipeline`)
and the integration test on the real broker (``test_hostile_integration.py``). Every
message is built around a known-good event, so each kind breaks one thing.

The corpus assumes a pipeline with the default limits (``DEFAULT_MAX_EVENT_BYTES``,
5 minutes into the future, 30 days into the past), ``unknown_items="reject"`` with the
catalog read, and :data:`ORIGINALS` sent (and accepted) before the corpus, so that
``duplicate`` has something to repeat.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from stream.contracts import DEFAULT_MAX_EVENT_BYTES, Reason, format_time
from stream.models import CatalogItem

#: the topic of catalog messages (the others are named by event type: play, skip, replay)
CATALOG = "catalog"
CATALOG_ITEMS = tuple(
    CatalogItem(f"hc-item-{n}", f"Song {n}", f"Artist {n % 3}", ("pop",), 200_000, 1.7e9)
    for n in range(6)
)
USERS = tuple(f"hc-user-{n}" for n in range(4))
#: the user every bad event is about (its key, unless the kind is about the key)
VICTIM = USERS[0]


@dataclass(frozen=True)
class Message:
    """One message to produce: to the topic of ``kind`` (an event type or ``"catalog"``)."""

    kind: str
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class BadMessage(Message):
    """A message that must become exactly one dead letter with ``reason`` (and ``field``)."""

    name: str = ""
    reason: Reason = Reason.PROCESSING_ERROR
    field: str | None = None


def event_doc(now: float, *, user: str = VICTIM, item: str | None = None, **changes: Any) -> dict:
    """A valid play (occurred a minute before ``now``); ``changes`` set fields, ``None`` drops."""
    doc: dict[str, Any] = {
        "event_id": f"hostile-{user}-{item}-{sorted(changes.items())!r}",
        "type": "play",
        "user_id": user,
        "item_id": CATALOG_ITEMS[0].item_id if item is None else item,
        "occurred_at": format_time(now - 60),
        "ms_played": 120_000,
        "duration_ms": 200_000,
        "device": "mobile",
        "country": "GB",
        "source": {"list_id": "L1", "row": "discover", "position": 2},
    }
    doc.update(changes)
    return {name: value for name, value in doc.items() if value is not None}


def originals(now: float) -> list[Message]:
    """Good events the corpus's ``duplicate`` repeats: send them first."""
    return [Message("play", VICTIM.encode(), orjson.dumps(event_doc(now, event_id="dup-1")))]


def good_event(n: int, now: float) -> Message:
    """The n-th good event: users, items and types in rotation, each with a fresh id."""
    user = USERS[n % len(USERS)]
    kind = ("play", "skip", "replay")[n % 3]
    doc = event_doc(
        now,
        user=user,
        item=CATALOG_ITEMS[n % len(CATALOG_ITEMS)].item_id,
        event_id=f"good-{uuid.uuid4().hex}",
        type=kind,
        ms_played=5_000 if kind == "skip" else 150_000,
        occurred_at=format_time(now - 120 + n * 0.01),
    )
    return Message(kind, user.encode(), orjson.dumps(doc))


def counts_by_user(messages: list[Message]) -> dict[str, dict[str, int]]:
    counts = {user: {"play": 0, "skip": 0, "replay": 0} for user in USERS}
    for message in messages:
        doc = orjson.loads(message.value)
        counts[doc["user_id"]][doc["type"]] += 1
    return counts


def build_corpus(now: float) -> list[BadMessage]:
    """Every kind of bad message, for a worker whose clock reads ``now``."""
    key = VICTIM.encode()
    good = event_doc(now)

    def raw(text: bytes, name: str, reason: Reason, field: str | None = None) -> BadMessage:
        return BadMessage("play", key, text, name=name, reason=reason, field=field)

    def doc(name: str, reason: Reason, field: str | None = None, **changes: Any) -> BadMessage:
        changes.setdefault("event_id", f"bad-{name}")
        value = orjson.dumps(event_doc(now, **changes))
        return BadMessage("play", key, value, name=name, reason=reason, field=field)

    def text(document: dict) -> bytes:
        return orjson.dumps(document)

    too_big = DEFAULT_MAX_EVENT_BYTES + 1
    padded = text({**good, "pad": ""})
    oversized = padded[:-2] + b" " * (too_big - len(padded)) + padded[-2:]
    nested = b'{"event_id":"n","deep":' + b"[" * 2000 + b"]" * 2000 + b"}"
    ok = text(good)
    schema = Reason.SCHEMA_VIOLATION
    at = "data.occurred_at"

    corpus = [
        # ---- the bytes
        BadMessage("play", key, None, name="tombstone", reason=Reason.TOMBSTONE),
        raw(b"", "empty_bytes", Reason.EMPTY_PAYLOAD),
        raw(oversized, "oversized_valid_json", Reason.OVERSIZED),
        raw(b"\xff" * too_big, "oversized_garbage", Reason.OVERSIZED),
        raw(ok.replace(b'"mobile"', b'"\xff\xfe"'), "invalid_utf8_byte", Reason.NOT_UTF8),
        raw(ok.decode().encode("utf-16"), "utf16_encoded", Reason.NOT_UTF8),
        raw(
            text({**good, "device": "t\u00e9l\u00e9"}).decode().encode("latin-1"),
            "latin1_encoded",
            Reason.NOT_UTF8,
        ),
        raw(ok.replace(b'"mobile"', b'"\xc0\xaf"'), "overlong_utf8", Reason.NOT_UTF8),
        raw(ok.replace(b'"mobile"', b'"\xed\xa0\x80"'), "utf8_encoded_surrogate", Reason.NOT_UTF8),
        # ---- the JSON
        raw(b"\xef\xbb\xbf" + ok, "utf8_bom", Reason.INVALID_JSON),
        raw(ok[: len(ok) // 2], "truncated_json", Reason.INVALID_JSON),
        raw(ok.replace(b"120000", b"NaN"), "nan_literal", Reason.INVALID_JSON),
        raw(ok.replace(b"120000", b"Infinity"), "infinity_literal", Reason.INVALID_JSON),
        raw(ok.replace(b"120000", b"1e400"), "number_overflow", Reason.INVALID_JSON),
        raw(ok.replace(b'"', b"'"), "single_quotes", Reason.INVALID_JSON),
        raw(ok + ok, "two_documents", Reason.INVALID_JSON),
        raw(ok[:-1] + b",}", "trailing_comma", Reason.INVALID_JSON),
        raw(b"/* hi */" + ok, "comment", Reason.INVALID_JSON),
        raw(ok.replace(b'"mobile"', b'"\\ud800"'), "lone_surrogate_escape", Reason.INVALID_JSON),
        raw(ok.replace(b'"mobile"', b'"mo\x01bile"'), "raw_control_character", Reason.INVALID_JSON),
        raw(nested, "deeply_nested", Reason.INVALID_JSON),
        raw(b"   \n", "whitespace_only", Reason.INVALID_JSON),
        raw(b"[" + ok + b"]", "json_array", Reason.NOT_AN_OBJECT),
        raw(b'"play"', "json_string", Reason.NOT_AN_OBJECT),
        raw(b"null", "json_null", Reason.NOT_AN_OBJECT),
        raw(b"42", "json_number", Reason.NOT_AN_OBJECT),
        raw(b"true", "json_true", Reason.NOT_AN_OBJECT),
        # ---- the schema
        raw(b"{}", "empty_object", schema, "data.event_id"),
        *(
            BadMessage(
                "play",
                key,
                text({k: v for k, v in good.items() if k != name}),
                name=f"missing_{name}",
                reason=schema,
                field=f"data.{name}",
            )
            for name in ("event_id", "type", "user_id", "item_id", "occurred_at", "ms_played")
        ),
        doc("event_id_number", schema, "data.event_id", event_id=7),
        doc("ms_played_string", schema, "data.ms_played", ms_played="12"),
        doc("ms_played_boolean", schema, "data.ms_played", ms_played=True),
        doc("ms_played_fraction", schema, "data.ms_played", ms_played=1.5),
        doc("ms_played_negative", schema, "data.ms_played", ms_played=-1),
        raw(
            ok.replace(b"120000", b"123456789012345678901234567890"),
            "huge_integer",
            schema,
            "data.ms_played",
        ),
        doc("duration_zero", schema, "data.duration_ms", duration_ms=0),
        doc("unknown_event_type", schema, "data.type", type="pause"),
        doc("extra_field", schema, "data.surprise", surprise=1),
        doc("naive_timestamp", schema, at, occurred_at=format_time(now - 60)[:-1]),
        doc("unparsable_timestamp", schema, at, occurred_at="yesterday"),
        doc("impossible_date", schema, at, occurred_at="2026-02-30T12:00:00Z"),
        doc("leap_second", schema, at, occurred_at="2026-06-30T23:59:60Z"),
        doc("epoch_number_timestamp", schema, at, occurred_at=int(now)),
        doc("empty_user_id", schema, "data.user_id", user_id=""),
        doc("overlong_user_id", schema, "data.user_id", user_id="u" * 129),
        doc("overlong_item_id", schema, "data.item_id", item_id="i" * 129),
        doc("nul_in_user_id", schema, "data.user_id", user_id=VICTIM + "\u0000"),
        doc("newline_in_item_id", schema, "data.item_id", item_id="hc-item-0\n"),
        doc("lowercase_country", schema, "data.country", country="gb"),
        doc(
            "negative_position",
            schema,
            "data.source.position",
            source={"list_id": "L1", "row": "discover", "position": -1},
        ),
        doc(
            "source_without_row", schema, "data.source.row", source={"list_id": "L1", "position": 1}
        ),
        doc("source_not_an_object", schema, "data.source", source="discover"),
        # ---- the routing
        doc("skip_on_plays", Reason.WRONG_TOPIC, "data.type", type="skip"),
        BadMessage(
            "replay",
            key,
            text({**good, "event_id": "bad-play-on-replays"}),
            name="play_on_replays",
            reason=Reason.WRONG_TOPIC,
            field="data.type",
        ),
        BadMessage(
            "play",
            None,
            text({**good, "event_id": "bad-no-key"}),
            name="missing_key",
            reason=Reason.MISSING_KEY,
            field="data.user_id",
        ),
        BadMessage(
            "play",
            b"",
            text({**good, "event_id": "bad-empty-key"}),
            name="empty_key",
            reason=Reason.MISSING_KEY,
            field="data.user_id",
        ),
        BadMessage(
            "play",
            USERS[1].encode(),
            text({**good, "event_id": "bad-other-key"}),
            name="key_of_another_user",
            reason=Reason.KEY_MISMATCH,
            field="data.user_id",
        ),
        BadMessage(
            "play",
            VICTIM.upper().encode(),
            text({**good, "event_id": "bad-upper-key"}),
            name="key_in_other_case",
            reason=Reason.KEY_MISMATCH,
            field="data.user_id",
        ),
        BadMessage(
            "play",
            b"\xff" + key,
            text({**good, "event_id": "bad-utf8-key"}),
            name="key_not_utf8",
            reason=Reason.KEY_MISMATCH,
            field="data.user_id",
        ),
        # ---- the meaning
        doc(
            "ms_played_over_duration",
            Reason.MS_PLAYED_OVER_DURATION,
            "data.ms_played",
            ms_played=200_001,
        ),
        doc("a_day_ahead", Reason.TIMESTAMP_IN_FUTURE, at, occurred_at=format_time(now + 86_400)),
        doc("year_9999", Reason.TIMESTAMP_IN_FUTURE, at, occurred_at="9999-12-31T23:59:59Z"),
        doc(
            "sixty_days_old",
            Reason.TIMESTAMP_TOO_OLD,
            at,
            occurred_at=format_time(now - 60 * 86_400),
        ),
        doc("epoch_zero", Reason.TIMESTAMP_TOO_OLD, at, occurred_at="1970-01-01T00:00:00Z"),
        doc("unknown_item", Reason.UNKNOWN_ITEM, "data.item_id", item_id="hc-never-announced"),
        raw(originals(now)[0].value, "duplicate_event_id", Reason.DUPLICATE),
        # ---- the catalog
        BadMessage(
            CATALOG, None, None, name="catalog_tombstone_without_key", reason=Reason.MISSING_KEY
        ),
        BadMessage(
            CATALOG,
            b"hc-other",
            _catalog_doc(),
            name="catalog_key_mismatch",
            reason=Reason.KEY_MISMATCH,
            field="data.item_id",
        ),
        BadMessage(
            CATALOG,
            b"hc-item-x",
            b'{"item_id": "hc-item-x",',
            name="catalog_invalid_json",
            reason=Reason.INVALID_JSON,
        ),
        BadMessage(
            CATALOG,
            b"hc-item-x",
            _catalog_doc(duration_ms=0),
            name="catalog_duration_zero",
            reason=schema,
            field="data.duration_ms",
        ),
    ]
    names = [message.name for message in corpus]
    assert len(names) == len(set(names)), "corpus kinds must have distinct names"
    return corpus


def _catalog_doc(**changes: Any) -> bytes:
    doc = {
        "item_id": "hc-item-x",
        "title": "X",
        "artist": "Y",
        "genres": ["pop"],
        "duration_ms": 1000,
        "release_date": "2026-01-01",
    }
    return orjson.dumps({**doc, **changes})
