"""The wire contract: schemas/ documents, their examples, and decoding into domain types."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from stream import contracts
from stream.contracts import Rejection, decode_interaction
from stream.models import EventType, Interaction, RecommendationList, RecommendedItem, Row, Source

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def test_every_schema_file_is_known_and_compiles():
    on_disk = sorted(path.name.removesuffix(".schema.json") for path in SCHEMA_DIR.glob("*.json"))
    assert on_disk == sorted(contracts.ALL_SCHEMAS)
    for name in on_disk:
        assert callable(contracts.validator(name))


@pytest.mark.parametrize("name", contracts.ALL_SCHEMAS)
def test_schema_examples_validate_and_counter_examples_do_not(name):
    schema = contracts.load_schema(name)
    assert schema["examples"], f"{name} has no examples"
    assert schema["x-invalid-examples"], f"{name} has no counter-examples"
    for example in schema["examples"]:
        assert contracts.validate_document(name, example) is None, example
    for counter_example in schema["x-invalid-examples"]:
        problem = contracts.validate_document(name, counter_example)
        assert isinstance(problem, Rejection), counter_example
        assert problem.reason == "schema_violation"


def _event(**changes):
    doc = {
        "event_id": "e1",
        "type": "play",
        "user_id": "u1",
        "item_id": "i1",
        "occurred_at": "2026-11-22T18:00:00.250+01:00",
        "ms_played": 90_000,
        "duration_ms": 180_000,
        "device": "mobile",
        "country": "GB",
        "source": {"list_id": "L1", "row": "discover", "position": 2},
    }
    doc.update(changes)
    return {key: value for key, value in doc.items() if value is not None}


def test_a_valid_event_decodes_to_an_interaction_with_utc_epoch_time():
    event = decode_interaction(orjson.dumps(_event()), expected_type=EventType.PLAY, key=b"u1")
    assert event == Interaction(
        event_id="e1",
        user_id="u1",
        item_id="i1",
        type=EventType.PLAY,
        timestamp=datetime(2026, 11, 22, 17, 0, 0, 250_000, tzinfo=UTC).timestamp(),
        ms_played=90_000,
        duration_ms=180_000,
        device="mobile",
        country="GB",
        source=Source("L1", "discover", 2),
    )
    assert event.completion == 0.5


def test_wire_round_trip_keeps_every_field():
    event = decode_interaction(orjson.dumps(_event()), expected_type=EventType.PLAY, key=b"u1")
    again = decode_interaction(
        contracts.encode_interaction(event), expected_type=EventType.PLAY, key=b"u1"
    )
    assert again == event


@pytest.mark.parametrize(
    ("raw", "key", "reason", "field"),
    [
        (b'{"event_id": ', b"u1", "invalid_json", None),
        (b"\xff\xfe{}", b"u1", "not_utf8", None),
        (b"[1, 2]", b"u1", "not_an_object", None),
        (None, b"u1", "tombstone", None),
        (b"", b"u1", "empty_payload", None),
        (b"x" * (contracts.DEFAULT_MAX_EVENT_BYTES + 1), b"u1", "oversized", None),
        (orjson.dumps(_event(ms_played=-5)), b"u1", "schema_violation", "data.ms_played"),
        (
            orjson.dumps(_event(occurred_at="2026-11-22T18:00:00")),
            b"u1",
            "schema_violation",
            "data.occurred_at",
        ),
        (orjson.dumps(_event(item_id=None)), b"u1", "schema_violation", "data.item_id"),
        (orjson.dumps(_event(surprise=1)), b"u1", "schema_violation", "data.surprise"),
        (orjson.dumps(_event(type="skip")), b"u1", "wrong_topic", "data.type"),
        (orjson.dumps(_event()), b"u2", "key_mismatch", "data.user_id"),
        (orjson.dumps(_event()), None, "missing_key", "data.user_id"),
        (orjson.dumps(_event()), b"", "missing_key", "data.user_id"),
        (
            orjson.dumps(_event(ms_played=180_001)),
            b"u1",
            "ms_played_over_duration",
            "data.ms_played",
        ),
    ],
)
def test_bad_messages_are_rejected_with_a_reason_and_field(raw, key, reason, field):
    outcome = decode_interaction(raw, expected_type=EventType.PLAY, key=key)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == reason
    assert outcome.field == field
    assert outcome.detail


def test_integral_floats_are_read_as_ints():
    event = decode_interaction(
        orjson.dumps(_event(ms_played=1000.0, duration_ms=2000.0)),
        expected_type=EventType.PLAY,
        key=b"u1",
    )
    assert (event.ms_played, event.duration_ms) == (1000, 2000)
    assert type(event.ms_played) is int and type(event.duration_ms) is int


def test_every_reason_code_is_listed_in_the_dead_letter_schema():
    schema = contracts.load_schema(contracts.DEAD_LETTER_SCHEMA)
    assert schema["properties"]["reason"]["enum"] == [reason.value for reason in contracts.Reason]


def test_dead_letter_carries_original_bytes_and_validates():
    raw = b"\x00not json"
    letter = contracts.encode_dead_letter(
        Rejection("invalid_json", "nope"),
        topic="plays",
        partition=3,
        offset=17,
        key=b"u1",
        value=raw,
        rejected_at=0.0,
    )
    doc = json.loads(letter)
    assert contracts.validate_document(contracts.DEAD_LETTER_SCHEMA, doc) is None
    assert base64.b64decode(doc["value_base64"]) == raw
    assert (doc["reason"], doc["topic"], doc["partition"], doc["offset"]) == (
        "invalid_json",
        "plays",
        3,
        17,
    )


def test_recommendation_list_round_trips_through_its_schema():
    rec = RecommendationList(
        user_id="u1",
        list_id="abc",
        generated_at=1_700_000_000.5,
        rows=(
            Row(
                "top-picks",
                "Top picks for you",
                (RecommendedItem("i9", 0.75, "Because you like jazz"),),
            ),
        ),
        based_on_events=3,
        last_event_id="e3",
        last_event_at=1_699_999_999.0,
    )
    assert contracts.decode_recommendation_list(contracts.encode_recommendation_list(rec)) == rec


def test_catalog_item_needs_its_key_and_a_real_date():
    doc = contracts.load_schema(contracts.CATALOG_ITEM_SCHEMA)["examples"][0]
    item = contracts.decode_catalog_item(orjson.dumps(doc), key=doc["item_id"].encode())
    assert item.genres == ("ambient", "electronic")
    assert contracts.catalog_item_to_wire(item) == doc
    wrong_key = contracts.decode_catalog_item(orjson.dumps(doc), key=b"other")
    assert isinstance(wrong_key, Rejection) and wrong_key.reason == "key_mismatch"
    bad_date = contracts.decode_catalog_item(
        orjson.dumps({**doc, "release_date": "2026-02-30"}), key=doc["item_id"].encode()
    )
    assert isinstance(bad_date, Rejection) and bad_date.reason == "schema_violation"


def test_deletion_request_round_trips_and_needs_its_key():
    doc = contracts.load_schema(contracts.DELETION_REQUEST_SCHEMA)["examples"][1]
    request = contracts.decode_deletion_request(orjson.dumps(doc), key=b"u-7")
    assert (request.user_id, request.request_id, request.reason) == (
        "u-7",
        "del-8c1f",
        "account_closed",
    )
    assert request.requested_at == datetime(2026, 11, 22, 18, 0, tzinfo=UTC).timestamp()
    again = contracts.decode_deletion_request(
        contracts.encode_deletion_request(request), key=b"u-7"
    )
    assert again == request
    for key, reason in [(b"u-8", "key_mismatch"), (None, "missing_key"), (b"", "missing_key")]:
        outcome = contracts.decode_deletion_request(orjson.dumps(doc), key=key)
        assert isinstance(outcome, Rejection)
        assert (outcome.reason, outcome.field) == (reason, "data.user_id")
    naive = contracts.decode_deletion_request(
        orjson.dumps({**doc, "requested_at": "2026-11-22T19:00:00"}), key=b"u-7"
    )
    assert (naive.reason, naive.field) == ("schema_violation", "data.requested_at")
    assert contracts.decode_deletion_request(None, key=b"u-7").reason == "tombstone"
