"""Editorial curation: pin, boost and block rules applied to a ranked list.

Rules arrive on the compacted ``curation`` topic (key = ``rule_id``, JSON validated
by ``schemas/curation-rule.schema.json``; a tombstone removes the rule). They apply
*after* the engine ranked a list, as a pure post-processing step: the engine is
never told about them.

Order of application, for the rules whose segment matches the user's context:

1. **block** - matching items leave every row (a row left empty is dropped);
2. **boost** - matching items' scores are multiplied by ``multiplier`` then
   increased by ``add`` (several boosts compose); touched rows are re-sorted by
   score (stable, so ties keep the engine's order);
3. **pin** - the item moves to ``position`` of ``row`` (past the end = last),
   leaving any other row it was in, so no item appears twice. Pins are placed in
   ascending position order; a row keeps its length (the lowest unpinned items
   make room). A pin into a row the list does not have, or of a blocked item, is
   skipped.

>>> from stream.models import RecommendationList, RecommendedItem, Row
>>> row = Row("top-picks", "Top picks", (RecommendedItem("a", 0.9, "r"),
...                                      RecommendedItem("b", 0.5, "r"),
...                                      RecommendedItem("c", 0.4, "r")))
>>> rec = RecommendationList("u1", "L1", 0.0, (row,))
>>> rules = RuleSet()
>>> rules.upsert(Rule("no-a", "block", "item_id", "a"))
>>> rules.upsert(Rule("c-up", "boost", "item_id", "c", multiplier=2.0))
>>> rules.upsert(Rule("pin-z", "pin", "item_id", "z", row="top-picks", position=0))
>>> [item.item_id for item in rules.apply(rec, CurationContext()).rows[0].items]
['z', 'c', 'b']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from stream.contracts import CURATION_RULE_SCHEMA, Rejection, decode_keyed_document
from stream.models import CatalogItem, RecommendationList, RecommendedItem, Row

PINNED_REASON: Final = "Picked by our editors"

Action = Literal["pin", "boost", "block"]
TargetKind = Literal["item_id", "artist", "genre"]


def _no_catalog(item_id: str) -> CatalogItem | None:
    return None


@dataclass(frozen=True, slots=True)
class Segment:
    """Who a rule is for: users whose latest event came from these countries / devices.

    ``None`` means any. Both set: both must match.

    >>> Segment(countries=frozenset({"GB"})).matches("GB", "tv")
    True
    >>> Segment(countries=frozenset({"GB"}), devices=frozenset({"tv"})).matches("GB", None)
    False
    """

    countries: frozenset[str] | None = None
    devices: frozenset[str] | None = None

    def matches(self, country: str | None, device: str | None) -> bool:
        if self.countries is not None and country not in self.countries:
            return False
        return self.devices is None or device in self.devices


@dataclass(frozen=True, slots=True)
class Rule:
    """One editorial rule (see the module docstring for what each action does).

    Parameters
    ----------
    rule_id
        The compacted topic's key: a newer rule with the same id replaces it.
    action
        ``pin``, ``boost`` or ``block``.
    target_kind, target
        What the rule matches: an ``item_id``, an ``artist`` or a ``genre``
        (artist and genre need the item's catalog entry; pins take items only).
    row, position
        pin: where the item goes.
    multiplier, add
        boost: ``score * multiplier + add``.
    segment
        Limits the rule to some users; ``None`` = everyone.
    """

    rule_id: str
    action: Action
    target_kind: TargetKind
    target: str
    row: str | None = None
    position: int | None = None
    multiplier: float = 1.0
    add: float = 0.0
    segment: Segment | None = None

    def applies_to(self, country: str | None, device: str | None) -> bool:
        return self.segment is None or self.segment.matches(country, device)

    def targets(self, item_id: str, info: CatalogItem | None) -> bool:
        """Whether the rule is about ``item_id`` (whose catalog entry is ``info``)."""
        if self.target_kind == "item_id":
            return item_id == self.target
        if info is None:
            return False
        if self.target_kind == "artist":
            return info.artist == self.target
        return self.target in info.genres


@dataclass(frozen=True, slots=True)
class CurationContext:
    """What a rule may look at besides the list: the user's segment and the catalog."""

    country: str | None = None
    device: str | None = None
    catalog: Callable[[str], CatalogItem | None] = _no_catalog


def rule_from_wire(doc: dict[str, Any]) -> Rule:
    """A :class:`Rule` from a document already valid against the curation-rule schema."""
    ((kind, target),) = doc["target"].items()
    segment = doc.get("segment")
    return Rule(
        rule_id=doc["rule_id"],
        action=doc["action"],
        target_kind=kind,
        target=target,
        row=doc.get("row"),
        position=doc.get("position"),
        multiplier=float(doc.get("multiplier", 1.0)),
        add=float(doc.get("add", 0.0)),
        segment=(
            None
            if not segment
            else Segment(
                countries=frozenset(segment["countries"]) if "countries" in segment else None,
                devices=frozenset(segment["devices"]) if "devices" in segment else None,
            )
        ),
    )


def decode_rule(
    raw: bytes | None, *, key: bytes | None, max_bytes: int = 16 * 1024
) -> Rule | Rejection:
    """Decode and validate one curation message (not a tombstone); the key must be its rule_id.

    >>> decode_rule(b'{"rule_id":"r1","action":"block","target":{"item_id":"t-1"}}', key=b"r1")
    Rule(rule_id='r1', action='block', target_kind='item_id', target='t-1', ...)
    >>> no_amount = b'{"rule_id":"r1","action":"boost","target":{"genre":"jazz"}}'
    >>> decode_rule(no_amount, key=b"r1").reason
    <Reason.SCHEMA_VIOLATION: 'schema_violation'>
    """
    doc = decode_keyed_document(
        raw, CURATION_RULE_SCHEMA, key=key, key_field="rule_id", max_bytes=max_bytes
    )
    if isinstance(doc, Rejection):
        return doc
    return rule_from_wire(doc)


class RuleSet:
    """The editorial rules in force, by ``rule_id``.

    Not thread-safe; :meth:`apply` does not modify the list it is given.
    """

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def upsert(self, rule: Rule) -> Rule | None:
        """Add or replace a rule; returns the rule it replaced, if any."""
        previous = self.rules.get(rule.rule_id)
        self.rules[rule.rule_id] = rule
        return previous

    def remove(self, rule_id: str) -> Rule | None:
        """Remove a rule (a tombstone); returns it, or ``None`` if there was none."""
        return self.rules.pop(rule_id, None)

    def applicable(self, context: CurationContext) -> list[Rule]:
        """Rules whose segment matches ``context``, in rule id order (deterministic)."""
        return [
            rule
            for _, rule in sorted(self.rules.items())
            if rule.applies_to(context.country, context.device)
        ]

    def by_action(self) -> dict[str, int]:
        """How many rules of each action (for stats)."""
        counts = {"pin": 0, "boost": 0, "block": 0}
        for rule in self.rules.values():
            counts[rule.action] += 1
        return counts

    def apply(self, rec: RecommendationList, context: CurationContext) -> RecommendationList:
        """``rec`` with the applicable rules applied (``rec`` itself when none apply)."""
        rules = self.applicable(context)
        if not rules:
            return rec
        return dataclasses.replace(rec, rows=apply_rules(rec.rows, rules, context.catalog))


def apply_rules(
    rows: Iterable[Row],
    rules: list[Rule],
    catalog: Callable[[str], CatalogItem | None] = _no_catalog,
) -> tuple[Row, ...]:
    """Block, then boost, then pin (the module docstring has the details)."""
    blocks = [rule for rule in rules if rule.action == "block"]
    boosts = [rule for rule in rules if rule.action == "boost"]
    pins = sorted(
        (rule for rule in rules if rule.action == "pin"),
        key=lambda rule: (rule.position or 0, rule.rule_id),
    )
    info_cache: dict[str, CatalogItem | None] = {}

    def info(item_id: str) -> CatalogItem | None:
        if item_id not in info_cache:
            info_cache[item_id] = catalog(item_id)
        return info_cache[item_id]

    def blocked(item_id: str) -> bool:
        return any(rule.targets(item_id, info(item_id)) for rule in blocks)

    # (row_id, title, [RecommendedItem], original length), in display order
    working: list[tuple[str, str, list[RecommendedItem], int]] = []
    for row in rows:
        items = [item for item in row.items if not blocked(item.item_id)]
        if boosts:
            items = _boosted(items, boosts, info)
        working.append((row.row_id, row.title, items, len(row.items)))

    pinned: dict[str, set[str]] = {}  # row_id -> item ids pinned there
    for rule in pins:
        target_row = next((entry for entry in working if entry[0] == rule.row), None)
        if target_row is None or blocked(rule.target):
            continue
        previous: RecommendedItem | None = None
        for _, _, items, _ in working:
            for index, item in enumerate(items):
                if item.item_id == rule.target:
                    previous = items.pop(index)
                    break
        items = target_row[2]
        position = min(rule.position or 0, len(items))
        if previous is not None:
            score = previous.score
        elif items:
            score = items[min(position, len(items) - 1)].score
        else:
            score = 0.0
        items.insert(position, RecommendedItem(rule.target, score, PINNED_REASON))
        pinned.setdefault(target_row[0], set()).add(rule.target)

    out: list[Row] = []
    for row_id, title, items, length in working:
        keep = pinned.get(row_id, set())
        while len(items) > max(length, len(keep)):
            # the lowest unpinned item makes room
            for index in range(len(items) - 1, -1, -1):
                if items[index].item_id not in keep:
                    del items[index]
                    break
        if items:
            out.append(Row(row_id, title, tuple(items)))
    return tuple(out)


def _boosted(
    items: list[RecommendedItem],
    boosts: list[Rule],
    info: Callable[[str], CatalogItem | None],
) -> list[RecommendedItem]:
    changed = False
    out = []
    for item in items:
        score = item.score
        for rule in boosts:
            if rule.targets(item.item_id, info(item.item_id)):
                score = score * rule.multiplier + rule.add
                changed = True
        out.append(item if score == item.score else dataclasses.replace(item, score=score))
    if changed:
        out.sort(key=lambda item: -item.score)  # stable: ties keep the engine's order
    return out
