"""Bad input never raises and never blocks: one rejection per bad message, every good one learned.

Pure (no Kafka): the corpus of ``hostile_corpus.py`` and a hypothesis fuzzer, both
interleaved with good events, through the worker's :class:`Pipeline`.
"""

from __future__ import annotations

import base64
from collections import Counter

import hypothesis
import orjson
from hostile_corpus import (
    CATALOG,
    CATALOG_ITEMS,
    USERS,
    Message,
    build_corpus,
    counts_by_user,
    event_doc,
    good_event,
    originals,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.contracts import (
    DEAD_LETTER_SCHEMA,
    Reason,
    Rejection,
    encode_catalog_item,
    encode_dead_letter,
    validate_document,
)
from stream.engine import Engine, EngineConfig
from stream.models import EventType, Interaction
from stream.pipeline import Pipeline

NOW = 1_800_000_000.0


def ready_pipeline() -> Pipeline:
    """A worker's pipeline with the catalog read and unknown items rejected."""
    pipeline = Pipeline(Engine(EngineConfig(seed=0)), unknown_items="reject", clock=lambda: NOW)
    for item in CATALOG_ITEMS:
        pipeline.ingest_catalog(encode_catalog_item(item), key=item.item_id.encode())
    pipeline.catalog_ready = True
    return pipeline


def feed(pipeline: Pipeline, message: Message) -> object:
    if message.kind == CATALOG:
        return pipeline.ingest_catalog(message.value, key=message.key)
    return pipeline.ingest_event(message.value, key=message.key, event_type=EventType(message.kind))


def test_the_corpus_has_many_distinct_kinds_covering_every_input_reason():
    corpus = build_corpus(NOW)
    assert len({message.name for message in corpus}) == len(corpus) >= 30
    covered = {message.reason for message in corpus}
    # processing_error needs an engine bug; user_forgotten a deletion first (test_forget.py)
    assert covered == set(Reason) - {Reason.PROCESSING_ERROR, Reason.USER_FORGOTTEN}


def test_each_bad_message_gives_one_rejection_with_its_reason_and_every_good_one_is_learned():
    pipeline = ready_pipeline()
    corpus = build_corpus(NOW)
    good = list(originals(NOW))
    for original in good:
        assert isinstance(feed(pipeline, original), Interaction)
    for n, bad in enumerate(corpus):
        event = good_event(n, NOW)
        good.append(event)
        assert isinstance(feed(pipeline, event), Interaction), event
        outcome = feed(pipeline, bad)
        assert isinstance(outcome, Rejection), bad.name
        assert (bad.name, outcome.reason, outcome.field) == (bad.name, bad.reason, bad.field)
        assert outcome.detail
    stats = pipeline.stats()
    assert stats["rejected_by_reason"] == dict(Counter(str(bad.reason) for bad in corpus))
    assert stats["events_accepted"] == len(good)
    for user, expected in counts_by_user(good).items():
        assert pipeline.engine.user_counts(user) == expected, user
    assert sorted(pipeline.take_dirty()) == sorted(USERS)


def test_every_corpus_dead_letter_validates_and_keeps_the_original_bytes():
    pipeline = ready_pipeline()
    for message in originals(NOW):
        feed(pipeline, message)
    for offset, bad in enumerate(build_corpus(NOW)):
        rejection = feed(pipeline, bad)
        letter = orjson.loads(
            encode_dead_letter(
                rejection,
                topic=bad.kind,
                partition=0,
                offset=offset,
                key=bad.key,
                value=bad.value,
                rejected_at=NOW,
            )
        )
        assert validate_document(DEAD_LETTER_SCHEMA, letter) is None, bad.name
        assert (letter["reason"], letter["field"]) == (bad.reason, bad.field)
        value = letter["value_base64"]
        assert (None if value is None else base64.b64decode(value)) == bad.value
        key = letter["key_base64"]
        assert (None if key is None else base64.b64decode(key)) == bad.key


# ------------------------------------------------------------------------------ fuzzing

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
_fields = st.sampled_from(sorted(event_doc(NOW)) + ["surprise"])


_kinds = st.sampled_from(["play", "skip", "replay"])
_keys = st.sampled_from([USERS[0].encode(), None, b""]) | st.binary(max_size=12)


@st.composite
def _mutated_event(draw: st.DrawFn) -> Message:
    """A valid event, often on its own topic with its own key, with fields dropped, added
    or retyped and maybe some bytes flipped (none of it, sometimes: then it is learned)."""
    kind = draw(_kinds)
    doc = event_doc(NOW, event_id=f"fuzz-{draw(st.integers(0, 5))}", type=kind)
    if kind == "skip":
        doc["ms_played"] = 4_000
    for _ in range(draw(st.integers(0, 2))):
        field = draw(_fields)
        if draw(st.booleans()):
            doc.pop(field, None)
        else:
            doc[field] = draw(_json)
    raw = bytearray(orjson.dumps(doc))
    for _ in range(draw(st.sampled_from([0, 0, 1, 3]))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    topic = draw(st.sampled_from([kind] * 4 + ["play", "skip", "replay", CATALOG]))
    key = draw(st.sampled_from([USERS[0].encode()] * 3) | _keys)
    return Message(topic, key, bytes(raw))


_fuzz_message = _mutated_event() | st.builds(
    Message,
    kind=st.sampled_from(["play", "skip", "replay", CATALOG]),
    key=_keys,
    value=st.none() | st.binary(max_size=300),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_fuzz_message, min_size=1, max_size=8))
def test_fuzzed_messages_never_raise_and_never_disturb_good_events(fuzzed):
    pipeline = ready_pipeline()
    good: list[Message] = []
    learned_fuzz: list[Interaction] = []
    rejections: Counter[str] = Counter()
    for n, message in enumerate(fuzzed):
        event = good_event(n, NOW)
        good.append(event)
        assert isinstance(feed(pipeline, event), Interaction), "a good event was refused"
        outcome = feed(pipeline, message)  # must not raise
        if isinstance(outcome, Rejection):
            assert outcome.reason in set(Reason)
            assert outcome.reason is not Reason.PROCESSING_ERROR, outcome
            rejections[str(outcome.reason)] += 1
            hypothesis.event(str(outcome.reason))
        elif isinstance(outcome, Interaction):
            assert message.kind != CATALOG
            learned_fuzz.append(outcome)
            hypothesis.event("learned")
        else:
            assert message.kind == CATALOG  # an item upserted, or a withdrawn id
            hypothesis.event("catalog applied")
    stats = pipeline.stats()
    assert stats["rejected_by_reason"] == dict(rejections)
    assert stats["events_accepted"] == len(good) + len(learned_fuzz)
    expected = counts_by_user(good)
    for event in learned_fuzz:
        expected.setdefault(event.user_id, {"play": 0, "skip": 0, "replay": 0})
        expected[event.user_id][event.type.value] += 1
    for user, counts in expected.items():
        assert pipeline.engine.user_counts(user) == (counts if any(counts.values()) else None)
