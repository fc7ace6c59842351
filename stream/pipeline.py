"""What a worker does with each message, without Faust.

The agents are thin: they hand raw bytes to a :class:`Pipeline` and send what it
returns. Keeping this here (no Faust import) lets unit tests, the benchmark and
the agents share one implementation.

>>> from stream.engine import Engine, EngineConfig
>>> from stream.contracts import parse_time
>>> clock = lambda: parse_time("2026-11-22T18:00:05Z")  # a fixed "now"
>>> pipeline = Pipeline(Engine(EngineConfig(seed=0)), clock=clock)
>>> raw = (b'{"event_id":"e1","type":"play","user_id":"u1","item_id":"i1",'
...        b'"occurred_at":"2026-11-22T18:00:00Z","ms_played":1000}')
>>> pipeline.ingest_event(raw, key=b"u1", event_type=EventType.PLAY).item_id
'i1'
>>> pipeline.take_dirty()
['u1']
>>> pipeline.ingest_event(b"{oops", key=b"u1", event_type=EventType.PLAY).reason
<Reason.INVALID_JSON: 'invalid_json'>
>>> pipeline.stats()["rejected_by_reason"]
{'invalid_json': 1}
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from stream.contracts import (
    DEFAULT_MAX_EVENT_BYTES,
    Reason,
    Rejection,
    decode_catalog_item,
    decode_interaction,
    decode_wrapped_request,
    format_time,
)
from stream.curation import CurationContext, Rule, RuleSet, decode_rule
from stream.dedupe import RecentIds
from stream.engine import Engine
from stream.experiments import HOLDOUT, Experiment, ExperimentMetrics, holdout_list
from stream.models import CatalogItem, EventType, Interaction, RecommendationList
from stream.wrapped import ListeningHistory

#: The user id the holdout arm's popularity list is asked for: never a real user
#: (the interaction schema requires a non-empty user_id).
_NOBODY = ""

logger = logging.getLogger(__name__)


class Pipeline:
    """Decode -> validate -> learn, and remember which users need a fresh list.

    Parameters
    ----------
    engine
        The recommender engine that learns and recommends.
    max_event_bytes
        Larger messages are rejected before parsing.
    max_event_future, max_event_age
        Events more than this many seconds ahead of the worker's clock, or older
        than this (0 = no limit), are rejected: a wrong clock or unit upstream
        would otherwise skew every decayed score.
    dedupe_window
        How many recent event ids are remembered: an event whose ``event_id`` is
        among them (a redelivery after a crash, an upstream retry) is rejected as
        ``duplicate`` instead of being learned twice.
    unknown_items
        ``"accept"``: an event may name an item the catalog has not announced (it
        learns the item without metadata). ``"reject"``: an event for an item the
        catalog never announced, or withdrew, is rejected as ``unknown_item`` -
        but only once :attr:`catalog_ready` is set (the whole catalog has been
        read), since the catalog and event topics are consumed concurrently.
    clock
        Wall clock for ``generated_at`` and decay at publish time (a fake in tests).
    experiment
        The holdout split; ``None`` = everyone personalised (experiment ``"none"``).
    history
        Per-user monthly counters for Wrapped; ``None`` = ``ListeningHistory()``.

    Notes
    -----
    Editorial rules (:meth:`ingest_curation`) and the experiment arm are applied
    in :meth:`recommend`, after the engine ranked: the engine never sees them.
    A rule change marks every user with a published list whose segment it may
    touch as dirty, so the next publishing tick republishes their lists.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_event_future: float = 300.0,
        max_event_age: float = 30 * 86_400.0,
        dedupe_window: int = 1_000_000,
        unknown_items: Literal["accept", "reject"] = "accept",
        clock: Callable[[], float] = time.time,
        experiment: Experiment | None = None,
        history: ListeningHistory | None = None,
    ) -> None:
        if unknown_items not in ("accept", "reject"):
            raise ValueError(f"unknown_items must be 'accept' or 'reject', not {unknown_items!r}")
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        self.max_event_future = max_event_future
        self.max_event_age = max_event_age
        self.dedupe_window = dedupe_window
        self.unknown_items = unknown_items
        self.clock = clock
        self.experiment = experiment
        self.history = history
        self._experiment = experiment or Experiment("none", 0.0)
        self._history = ListeningHistory() if history is None else history
        self.rules = RuleSet()
        self.metrics = ExperimentMetrics()
        #: user_id -> (country, device) of the user's latest event (rule segments)
        self._user_context: dict[str, tuple[str | None, str | None]] = {}
        self.curation_messages = 0
        self.curation_changed_at: float | None = None
        self.users_dirtied_by_curation = 0
        self.wrapped_answered = 0
        #: Set by the worker once it has read the whole catalog (see ``unknown_items``).
        self.catalog_ready = False
        self._catalog_ids: set[str] = set()  # announced and not withdrawn
        self._recent_ids = RecentIds(dedupe_window)
        # Insertion-ordered set: users are refreshed in the order they became dirty.
        self._dirty: dict[str, None] = {}
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[Reason] = Counter()
        self.catalog_items = 0
        self.lists_published = 0
        self.lists_in_flight = 0
        self.first_event_processed_at: float | None = None
        self.last_event_processed_at: float | None = None

    def ingest_event(
        self, raw: bytes | None, *, key: bytes | None, event_type: EventType
    ) -> Interaction | Rejection:
        """Learn from one message of the topic for ``event_type``, or say why it was rejected."""
        outcome = self._admit(raw, key=key, event_type=event_type)
        if isinstance(outcome, Rejection):
            self.rejected[outcome.reason] += 1
            return outcome
        failure = self._apply(self.engine.learn, outcome)
        if failure is not None:
            return failure  # not remembered as seen: a replay after the fix is learned
        self._recent_ids.add(outcome.event_id)
        self.accepted[outcome.type.value] += 1
        self._dirty[outcome.user_id] = None
        self._user_context[outcome.user_id] = (outcome.country, outcome.device)
        self._history.learn(outcome, self.catalog_entry(outcome.item_id))
        self.metrics.on_event(outcome)
        self.last_event_processed_at = self.clock()
        if self.first_event_processed_at is None:
            self.first_event_processed_at = self.last_event_processed_at
        return outcome

    def _admit(
        self, raw: bytes | None, *, key: bytes | None, event_type: EventType
    ) -> Interaction | Rejection:
        """Decode and validate; then refuse events out of the time window or seen before."""
        event = decode_interaction(
            raw, expected_type=event_type, key=key, max_bytes=self.max_event_bytes
        )
        if isinstance(event, Rejection):
            return event
        out_of_range = self._check_event_time(event.timestamp)
        if out_of_range is not None:
            return out_of_range
        if (
            self.unknown_items == "reject"
            and self.catalog_ready
            and event.item_id not in self._catalog_ids
        ):
            return Rejection(
                Reason.UNKNOWN_ITEM,
                f"item {event.item_id!r} is not in the catalog",
                "data.item_id",
            )
        if event.event_id in self._recent_ids:
            return Rejection(Reason.DUPLICATE, f"event_id {event.event_id!r} was already learned")
        return event

    def _check_event_time(self, timestamp: float) -> Rejection | None:
        now = self.clock()
        if timestamp > now + self.max_event_future:
            return Rejection(
                Reason.TIMESTAMP_IN_FUTURE,
                f"occurred_at is {timestamp - now:.0f}s ahead of the worker's clock "
                f"(limit {self.max_event_future:.0f}s)",
                "data.occurred_at",
            )
        if self.max_event_age and timestamp < now - self.max_event_age:
            return Rejection(
                Reason.TIMESTAMP_TOO_OLD,
                f"occurred_at is {(now - timestamp) / 86_400:.1f} days old "
                f"(limit {self.max_event_age / 86_400:.1f} days)",
                "data.occurred_at",
            )
        return None

    def ingest_catalog(
        self, raw: bytes | None, *, key: bytes | None
    ) -> CatalogItem | Rejection | str:
        """Apply one catalog message: an item (added or updated), or a tombstone (removed id)."""
        if raw is None and key:
            item_id = key.decode("utf-8", "replace")
            self.engine.remove_item(item_id)
            self._catalog_ids.discard(item_id)
            return item_id
        if raw is None:
            outcome: CatalogItem | Rejection = Rejection(
                Reason.MISSING_KEY, "a tombstone without a key withdraws nothing"
            )
        else:
            outcome = decode_catalog_item(raw, key=key, max_bytes=self.max_event_bytes)
        if isinstance(outcome, Rejection):
            self.rejected[outcome.reason] += 1
            return outcome
        failure = self._apply(self.engine.upsert_item, outcome)
        if failure is not None:
            return failure
        self._catalog_ids.add(outcome.item_id)
        self.catalog_items += 1
        return outcome

    def _apply(self, update: Callable[[Any], None], value: Any) -> Rejection | None:
        """Run an engine update; an exception becomes a dead letter instead of a crashed agent.

        The message keeps its original bytes in the dead letter, so it can be replayed
        once the bug is fixed; one poisoned message must not block its partition.
        """
        try:
            update(value)
        except Exception as error:  # noqa: BLE001
            logger.exception("engine failed on %r", value)
            rejection = Rejection(Reason.PROCESSING_ERROR, f"{type(error).__name__}: {error}")
            self.rejected[rejection.reason] += 1
            return rejection
        return None

    def take_dirty(self, limit: int | None = None) -> list[str]:
        """Up to ``limit`` users whose list is out of date, oldest first, taken off the set."""
        if limit is None or limit >= len(self._dirty):
            users = list(self._dirty)
            self._dirty.clear()
            return users
        users = list(itertools.islice(self._dirty, limit))
        for user_id in users:
            del self._dirty[user_id]
        return users

    def mark_dirty(self, user_id: str) -> None:
        """Ask for a fresh list for ``user_id`` (e.g. after a failed publish)."""
        self._dirty[user_id] = None

    def catalog_entry(self, item_id: str) -> CatalogItem | None:
        """What the catalog says about ``item_id`` (``None`` if never announced)."""
        items = self.engine.items
        row = items.row(item_id)
        return None if row is None else items.catalog[row]

    def recommend(self, user_id: str) -> RecommendationList:
        """The list to publish for ``user_id``: the arm's list, then editorial rules.

        Counted as published (lists and per-arm metrics) when called.
        """
        now = self.clock()
        arm = self._experiment.arm(user_id)
        if arm == HOLDOUT:
            user = self.engine.users.get(user_id)
            ids = self.engine.items.ids
            recommendations = holdout_list(
                self.engine.recommend(_NOBODY, now=now),
                user_id=user_id,
                seen=() if user is None else (ids[row] for row in user.seen),
                based_on_events=0 if user is None else user.n_events,
                last_event_id=None if user is None else user.last_event_id,
                last_event_at=None if user is None else user.last_event_at,
            )
        else:
            recommendations = self.engine.recommend(user_id, now=now)
        recommendations = dataclasses.replace(
            recommendations, arm=arm, experiment=self._experiment.experiment_id
        )
        if len(self.rules):
            country, device = self._user_context.get(user_id, (None, None))
            recommendations = self.rules.apply(
                recommendations, CurationContext(country, device, self.catalog_entry)
            )
        self.metrics.on_list(recommendations)
        self.lists_published += 1
        return recommendations

    # ------------------------------------------------------------------ curation
    def ingest_curation(self, raw: bytes | None, *, key: bytes | None) -> Rule | str | Rejection:
        """Apply one curation message: a rule (added or replaced), or a tombstone (removed id).

        Users whose lists the change may alter are marked dirty.
        """
        self.curation_messages += 1
        if raw is None:
            if not key:
                rejection = Rejection(
                    Reason.MISSING_KEY, "a tombstone without a key removes nothing"
                )
                self.rejected[rejection.reason] += 1
                return rejection
            rule_id = key.decode("utf-8", "replace")
            removed = self.rules.remove(rule_id)
            if removed is not None:
                self._rule_changed(removed)
            return rule_id
        outcome = decode_rule(raw, key=key, max_bytes=self.max_event_bytes)
        if isinstance(outcome, Rejection):
            self.rejected[outcome.reason] += 1
            return outcome
        previous = self.rules.upsert(outcome)
        if previous is not None:
            self._rule_changed(previous)
        self._rule_changed(outcome)
        return outcome

    def _rule_changed(self, rule: Rule) -> None:
        self.curation_changed_at = self.clock()
        before = len(self._dirty)
        for user_id in self.metrics.user_arms:  # users with a published list
            country, device = self._user_context.get(user_id, (None, None))
            if rule.applies_to(country, device):
                self._dirty[user_id] = None
        self.users_dirtied_by_curation += len(self._dirty) - before

    # ------------------------------------------------------------------ wrapped
    def wrapped(
        self, user_id: str, period: str, *, top: int = 5, request_id: str | None = None
    ) -> dict[str, Any]:
        """``user_id``'s Wrapped for ``period`` (``YYYY-MM`` or ``YYYY``), as the wire document
        of ``schemas/wrapped.schema.json`` (JSON-ready). Raises ``ValueError`` on a bad period.
        """
        summary = self._history.summary(user_id, period, top=top)
        return {"request_id": request_id, **summary, "generated_at": format_time(self.clock())}

    def answer_wrapped_request(
        self, raw: bytes | None, *, key: bytes | None
    ) -> dict[str, Any] | Rejection:
        """A request from ``wrapped-requests`` -> its Wrapped document, or why not."""
        request = decode_wrapped_request(raw, key=key, max_bytes=self.max_event_bytes)
        if isinstance(request, Rejection):
            self.rejected[request.reason] += 1
            return request
        self.wrapped_answered += 1
        return self.wrapped(
            request.user_id, request.period, top=request.top, request_id=request.request_id
        )

    def stats(self) -> dict[str, Any]:
        """Counters for health checks and benchmarks (JSON-ready).

        >>> from stream.engine import Engine, EngineConfig
        >>> Pipeline(Engine(EngineConfig())).stats()["events_accepted"]
        0
        """
        return {
            "events_accepted": sum(self.accepted.values()),
            "events_by_type": dict(self.accepted),
            "rejected_by_reason": {str(reason): n for reason, n in self.rejected.items()},
            "catalog_messages_applied": self.catalog_items,
            "catalog_ready": self.catalog_ready,
            "lists_published": self.lists_published,
            "users_waiting_for_a_list": len(self._dirty),
            "lists_in_flight": self.lists_in_flight,
            "first_event_processed_at": self.first_event_processed_at,
            "last_event_processed_at": self.last_event_processed_at,
            "curation": {
                "rules": len(self.rules),
                "rules_by_action": self.rules.by_action(),
                "messages": self.curation_messages,
                "last_change_at": self.curation_changed_at,
                "users_marked_dirty": self.users_dirtied_by_curation,
            },
            "experiment": {
                "experiment_id": self._experiment.experiment_id,
                "holdout_share": self._experiment.holdout_share,
                **self.metrics.as_dict(),
            },
            "wrapped": {
                "users": len(self._history.users),
                "answered": self.wrapped_answered,
            },
        }
