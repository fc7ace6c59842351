"""Editorial rules as a pure post-processing step on a ranked list."""

from __future__ import annotations

import orjson
import pytest

from stream.contracts import Reason, Rejection, validate_document
from stream.curation import (
    PINNED_REASON,
    CurationContext,
    Rule,
    RuleSet,
    Segment,
    decode_rule,
)
from stream.models import CatalogItem, RecommendationList, RecommendedItem, Row

CATALOG = {
    "a": CatalogItem("a", "A", "Band A", ("rock",), 1000, 0.0),
    "b": CatalogItem("b", "B", "Band B", ("jazz",), 1000, 0.0),
    "c": CatalogItem("c", "C", "Band A", ("jazz", "rock"), 1000, 0.0),
    "d": CatalogItem("d", "D", "Band D", ("pop",), 1000, 0.0),
    "x": CatalogItem("x", "X", "Band X", ("pop",), 1000, 0.0),
}


def _row(row_id: str, *pairs: tuple[str, float]) -> Row:
    return Row(row_id, row_id.title(), tuple(RecommendedItem(i, s, "engine") for i, s in pairs))


def _list() -> RecommendationList:
    return RecommendationList(
        "u1",
        "L1",
        0.0,
        (
            _row("top-picks", ("a", 0.9), ("b", 0.8), ("c", 0.7)),
            _row("trending", ("d", 30.0), ("x", 20.0)),
        ),
    )


def _ids(rec: RecommendationList) -> dict[str, list[str]]:
    return {row.row_id: [item.item_id for item in row.items] for row in rec.rows}


def _context(**kwargs) -> CurationContext:
    return CurationContext(catalog=CATALOG.get, **kwargs)


def _apply(*rules: Rule, context: CurationContext | None = None) -> RecommendationList:
    ruleset = RuleSet()
    for rule in rules:
        ruleset.upsert(rule)
    return ruleset.apply(_list(), context or _context())


def _assert_invariants(rec: RecommendationList) -> None:
    ids = rec.item_ids()
    assert len(ids) == len(set(ids)), f"an item twice: {ids}"
    assert all(row.items for row in rec.rows)


def test_no_rules_returns_the_list_itself():
    rec = _list()
    assert RuleSet().apply(rec, _context()) is rec


def test_block_removes_an_item_from_every_row_and_drops_an_emptied_row():
    rec = _apply(
        Rule("b1", "block", "item_id", "b"),
        Rule("b2", "block", "genre", "pop"),
    )
    assert _ids(rec) == {"top-picks": ["a", "c"]}
    _assert_invariants(rec)


def test_block_by_artist_needs_the_catalog():
    rule = Rule("b", "block", "artist", "Band A")
    assert _ids(_apply(rule))["top-picks"] == ["b"]
    assert _ids(_apply(rule, context=CurationContext()))["top-picks"] == ["a", "b", "c"]


def test_boost_multiplies_then_adds_and_resorts_the_row():
    rec = _apply(
        Rule("up", "boost", "genre", "jazz", multiplier=2.0),  # b 1.6, c 1.4
        Rule("up2", "boost", "item_id", "c", add=0.5),  # c 1.9
    )
    top = rec.rows[0]
    assert [item.item_id for item in top.items] == ["c", "b", "a"]
    assert [item.score for item in top.items] == pytest.approx([1.9, 1.6, 0.9])
    _assert_invariants(rec)


def test_a_demoting_boost_moves_an_item_down():
    rec = _apply(Rule("down", "boost", "item_id", "a", multiplier=0.1))
    assert _ids(rec)["top-picks"] == ["b", "c", "a"]


def test_pin_moves_an_item_to_its_position_without_duplicates_and_keeps_row_length():
    rec = _apply(Rule("p", "pin", "item_id", "d", row="top-picks", position=1))
    assert _ids(rec) == {"top-picks": ["a", "d", "b"], "trending": ["x"]}
    pinned = rec.rows[0].items[1]
    assert pinned.reason == PINNED_REASON
    assert pinned.score == 30.0, "a pinned item that was listed keeps its score"
    _assert_invariants(rec)


def test_pin_of_a_new_item_past_the_end_lands_last_and_pins_survive_boosts():
    rec = _apply(
        Rule("p0", "pin", "item_id", "zzz", row="top-picks", position=0),
        Rule("p9", "pin", "item_id", "yyy", row="top-picks", position=50),
        Rule("up", "boost", "item_id", "c", multiplier=100.0),
    )
    assert _ids(rec)["top-picks"] == ["zzz", "c", "yyy"]
    _assert_invariants(rec)


def test_pin_of_a_blocked_item_or_into_a_missing_row_is_skipped():
    rec = _apply(
        Rule("p", "pin", "item_id", "d", row="top-picks", position=0),
        Rule("b", "block", "item_id", "d"),
        Rule("q", "pin", "item_id", "a", row="no-such-row", position=0),
    )
    assert _ids(rec) == {"top-picks": ["a", "b", "c"], "trending": ["x"]}


def test_segment_limits_a_rule_to_matching_users():
    rule = Rule("b", "block", "item_id", "a", segment=Segment(countries=frozenset({"GB"})))
    assert "a" not in _apply(rule, context=_context(country="GB")).item_ids()
    assert "a" in _apply(rule, context=_context(country="FR")).item_ids()
    assert "a" in _apply(rule, context=_context()).item_ids()
    both = Segment(countries=frozenset({"GB"}), devices=frozenset({"tv"}))
    assert not both.matches("GB", "mobile") and both.matches("GB", "tv")


def test_apply_does_not_modify_its_input():
    rec = _list()
    before = _ids(rec)
    ruleset = RuleSet()
    ruleset.upsert(Rule("p", "pin", "item_id", "d", row="top-picks", position=0))
    ruleset.apply(rec, _context())
    assert _ids(rec) == before


def test_upsert_replaces_and_remove_forgets():
    ruleset = RuleSet()
    first = Rule("r", "block", "item_id", "a")
    assert ruleset.upsert(first) is None
    assert ruleset.upsert(Rule("r", "block", "item_id", "b")) == first
    assert len(ruleset) == 1 and ruleset.by_action()["block"] == 1
    assert ruleset.remove("r") is not None and ruleset.remove("r") is None


def test_every_schema_example_decodes_to_a_rule():
    from stream.contracts import load_schema

    for example in load_schema("curation-rule")["examples"]:
        rule = decode_rule(orjson.dumps(example), key=example["rule_id"].encode())
        assert isinstance(rule, Rule), rule
    segmented = decode_rule(
        orjson.dumps(load_schema("curation-rule")["examples"][1]), key=b"boost-jazz-gb-tv"
    )
    assert segmented.segment == Segment(frozenset({"GB"}), frozenset({"tv"}))
    assert segmented.multiplier == 1.5 and segmented.target_kind == "genre"


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b'{"rule_id":"r","action":"block","target":{"item_id":"a"}}', b"other", "key_mismatch"),
        (b'{"rule_id":"r","action":"block","target":{"item_id":"a"}}', None, "missing_key"),
        (b'{"rule_id":"r","action":"pin","target":{"item_id":"a"}}', b"r", "schema_violation"),
        (b"{not json", b"r", "invalid_json"),
    ],
)
def test_invalid_rules_are_rejected_with_a_reason(raw, key, reason):
    outcome = decode_rule(raw, key=key)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == Reason(reason)


def test_a_curated_list_is_still_a_valid_wire_list():
    from stream.contracts import recommendation_list_to_wire

    rec = _apply(Rule("p", "pin", "item_id", "new", row="trending", position=0))
    assert validate_document("recommendation-list", recommendation_list_to_wire(rec)) is None


def test_pipeline_applies_rules_after_ranking_and_marks_affected_users_dirty():
    from stream.contracts import format_time
    from stream.engine import Engine, EngineConfig
    from stream.models import EventType
    from stream.pipeline import Pipeline

    now = 1_790_000_000.0
    pipeline = Pipeline(Engine(EngineConfig(seed=0, row_size=5)), clock=lambda: now)
    for n, (user, item, country) in enumerate(
        [("u1", "a", "GB"), ("u2", "b", "FR"), ("u3", "a", "GB"), ("u3", "c", "GB")]
    ):
        raw = orjson.dumps(
            {
                "event_id": f"e{n}",
                "type": "play",
                "user_id": user,
                "item_id": item,
                "occurred_at": format_time(now - 60),
                "ms_played": 1000,
                "country": country,
            }
        )
        pipeline.ingest_event(raw, key=user.encode(), event_type=EventType.PLAY)
    for user in pipeline.take_dirty():
        pipeline.recommend(user)
    rule = b'{"rule_id":"gb","action":"pin","target":{"item_id":"new"},"row":"top-picks",'
    rule += b'"position":0,"segment":{"countries":["GB"]}}'
    assert isinstance(pipeline.ingest_curation(rule, key=b"gb"), Rule)
    assert sorted(pipeline.take_dirty()) == ["u1", "u3"]
    assert pipeline.recommend("u1").rows[0].items[0].item_id == "new"
    assert "new" not in pipeline.recommend("u2").item_ids()
    assert pipeline.ingest_curation(None, key=b"gb") == "gb"
    assert sorted(pipeline.take_dirty()) == ["u1", "u3"]
    assert "new" not in pipeline.recommend("u1").item_ids()
    bad = pipeline.ingest_curation(b'{"rule_id":"x","action":"hide"}', key=b"x")
    assert bad.reason == "schema_violation"
    stats = pipeline.stats()["curation"]
    assert stats["rules"] == 0 and stats["messages"] == 3 and stats["users_marked_dirty"] == 4


def test_users_with_the_same_country_and_device_share_one_context(monkeypatch):
    """The segment context of every user: one tuple per distinct pair, values unchanged."""
    import stream.pipeline
    from stream.contracts import format_time
    from stream.engine import Engine, EngineConfig
    from stream.models import EventType
    from stream.pipeline import Pipeline

    monkeypatch.setattr(stream.pipeline, "_MAX_CONTEXTS", 3)
    now = 1_790_000_000.0
    pipeline = Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: now)
    pairs = [("GB", "tv"), ("FR", "tv"), ("GB", "tv"), (None, None), ("GB", "car"), ("GB", "tv")]
    for n, (country, device) in enumerate(pairs):
        doc = {
            "event_id": f"e{n}",
            "type": "play",
            "user_id": f"u{n}",
            "item_id": "a",
            "occurred_at": format_time(now - 60),
            "ms_played": 1000,
        }
        doc.update({"country": country} if country else {})
        doc.update({"device": device} if device else {})
        pipeline.ingest_event(orjson.dumps(doc), key=f"u{n}".encode(), event_type=EventType.PLAY)
    contexts = [pipeline._user_context[f"u{n}"] for n in range(len(pairs))]
    assert contexts == pairs
    assert contexts[0] is contexts[2] is contexts[5] and contexts[3] is not contexts[0]
    assert ("GB", "car") not in pipeline._contexts  # came past the cap: kept, not shared
    assert len(pipeline._contexts) == 3
    restored = Pipeline(Engine(EngineConfig(seed=0)), clock=lambda: now)
    restored.restore(pipeline.snapshot())
    assert restored._user_context["u0"] is restored._user_context["u5"]
