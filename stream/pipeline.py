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

Forgetting a user drops what the engine holds about them and refuses their past:

>>> pipeline.forget("u1", at=parse_time("2026-11-22T18:00:01Z"))
True
>>> pipeline.engine.known_user("u1"), pipeline.take_dirty()
(False, [])
>>> raw = raw.replace(b'"e1"', b'"e2"')  # the same play again, under a new event id
>>> pipeline.ingest_event(raw, key=b"u1", event_type=EventType.PLAY).reason
<Reason.USER_FORGOTTEN: 'user_forgotten'>
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import pickle
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any, Literal

from stream.contracts import (
    DEFAULT_MAX_EVENT_BYTES,
    Reason,
    Rejection,
    decode_catalog_item,
    decode_deletion_request,
    decode_interaction,
    decode_wrapped_request,
    exact_size,
    format_time,
)
from stream.curation import CurationContext, Rule, RuleSet, decode_rule
from stream.dedupe import RecentIds
from stream.engine import Engine
from stream.experiments import HOLDOUT, Experiment, ExperimentMetrics, holdout_list
from stream.metrics import Freshness
from stream.models import (
    CatalogItem,
    DeletionRequest,
    EventType,
    Interaction,
    RecommendationList,
)
from stream.wrapped import ListeningHistory

#: The user id the holdout arm's popularity list is asked for: never a real user
#: (the interaction schema requires a non-empty user_id).
_NOBODY = ""

logger = logging.getLogger(__name__)

_SNAPSHOT_VERSION = 2
#: Distinct (country, device) pairs shared between users (see ``Pipeline._context``).
_MAX_CONTEXTS = 4_096


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
    served_lists
        How many users' latest published lists are kept in memory for the HTTP API
        (least recently published dropped first).
    forgotten_users_max
        How many forgotten users are remembered with their deletion time (see
        :meth:`forget`). Past this, the oldest deletion is dropped from memory
        (logged, counted as ``forgotten_evicted``): that user's old events, if
        replayed, would be learned again. Deletions older than ``max_event_age``
        are dropped first and safely, since events that old are refused anyway.
    clock
        Wall clock for ``generated_at`` and decay at publish time (a fake in tests).
    experiment
        The holdout split; ``None`` = everyone personalised (experiment ``"none"``).
    history
        Per-user monthly counters for Wrapped; ``None`` = ``ListeningHistory()``.
    rerank_after
        Seconds after a quick list (:meth:`Engine.quick_recommend`: the user's last
        list patched for their new events) before the user's rows may be ranked
        again in the background (:meth:`take_reranks`), so that a burst of events
        gets one re-rank after it, not one per event.

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
        served_lists: int = 10_000,
        forgotten_users_max: int = 1_000_000,
        clock: Callable[[], float] = time.time,
        experiment: Experiment | None = None,
        history: ListeningHistory | None = None,
        rerank_after: float = 5.0,
    ) -> None:
        if unknown_items not in ("accept", "reject"):
            raise ValueError(f"unknown_items must be 'accept' or 'reject', not {unknown_items!r}")
        if forgotten_users_max < 1:
            raise ValueError(f"forgotten_users_max must be >= 1, not {forgotten_users_max}")
        self.engine = engine
        self.max_event_bytes = max_event_bytes
        self.max_event_future = max_event_future
        self.max_event_age = max_event_age
        self.dedupe_window = dedupe_window
        self.unknown_items = unknown_items
        self.served_lists = served_lists
        self.forgotten_users_max = forgotten_users_max
        self.clock = clock
        self.experiment = experiment
        self.history = history
        self.rerank_after = rerank_after
        self._experiment = experiment or Experiment("none", 0.0)
        self._history = ListeningHistory() if history is None else history
        self._history.attach_items(engine.items)  # Wrapped numbers items by the engine's rows
        self.rules = RuleSet()
        self.metrics = ExperimentMetrics()
        #: user_id -> (country, device) of the user's latest event (rule segments)
        self._user_context: dict[str, tuple[str | None, str | None]] = {}
        self._contexts: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = {}
        self.curation_messages = 0
        self.curation_changed_at: float | None = None
        self.users_dirtied_by_curation = 0
        self.wrapped_answered = 0
        #: Set by the worker once it has read the whole catalog (see ``unknown_items``).
        self.catalog_ready = False
        self._recent_ids = RecentIds(dedupe_window)
        # Insertion-ordered set: users are refreshed in the order they became dirty.
        self._dirty: dict[str, None] = {}
        # user -> when their latest list was a quick one, oldest first: due a re-rank.
        self._quick_since: dict[str, float] = {}
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[Reason] = Counter()
        #: user_id -> deletion time (epoch seconds), oldest deletion first: their
        #: events that occurred at or before it are refused as ``user_forgotten``.
        #: Part of :meth:`snapshot`: a restart must not let old events resurrect a user.
        self.forgotten: dict[str, float] = {}
        self.deletions_applied = 0
        self.forgotten_evicted = 0
        self.tombstones_published = 0
        self.catalog_items = 0
        self.lists_published = 0
        self.lists_quick = 0
        self.lists_reranked = 0
        self.lists_in_flight = 0
        self.lists_delivered = 0
        self.freshness = Freshness(clock=clock)
        # user -> their latest published list (wire bytes), least recently published first
        self._latest_lists: OrderedDict[str, bytes] = OrderedDict()
        self._recent_users: deque[str] = deque(maxlen=10)
        self.first_event_processed_at: float | None = None
        self.last_event_processed_at: float | None = None
        #: Per input partition ``(topic, partition)``, the next offset whose record is
        #: not reflected in this state yet (see :meth:`advance` and :mod:`stream.checkpoint`).
        self.positions: dict[tuple[str, int], int] = {}
        #: user_id -> the partition their events come from (events are keyed by user):
        #: whose state moves when a partition moves to another worker (stream.handover).
        self.user_partitions: dict[str, int] = {}
        #: Per input partition, the next offset whose *item-side* effects (popularity,
        #: co-occurrence, item factors) are not in this engine's item replica yet: learned
        #: here, or received from the worker that learned them (stream.item_sharing).
        #: Records below it but at or above :attr:`positions` are learned user-side only.
        self.item_positions: dict[tuple[str, int], int] = {}
        #: Input partitions whose item-side effects were learned here since the last
        #: item update was taken (stream.item_sharing): what that update covers.
        self.item_partitions_learned: set[tuple[str, int]] = set()
        #: item-updates partition -> next offset to read (the replica includes the rest)
        self.item_update_offsets: dict[int, int] = {}
        #: Item updates taken from the engine but not yet acknowledged by the broker,
        #: by sequence number (sent again after a restart: receivers drop what they have).
        self.pending_item_updates: dict[int, bytes] = {}
        self.item_update_sequence = 0
        self.item_updates_sent = 0
        self.item_updates_applied = 0
        self.item_updates_skipped = 0

    def ingest_event(
        self,
        raw: bytes | None,
        *,
        key: bytes | None,
        event_type: EventType,
        produced_at: float | None = None,
        source: tuple[str, int, int] | None = None,
    ) -> Interaction | Rejection:
        """Learn from one message of the topic for ``event_type``, or say why it was rejected.

        ``produced_at`` is the message's Kafka timestamp (epoch seconds), the start
        of the event's freshness. ``source`` is the message's ``(topic, partition,
        offset)``: the user's partition is remembered, and a record whose item-side
        effects this worker's replica already has (:attr:`item_positions`) is learned
        for the user only.
        """
        outcome = self._admit(raw, key=key, event_type=event_type)
        if isinstance(outcome, Rejection):
            self.rejected[outcome.reason] += 1
            return outcome
        item_side = True
        if source is not None:
            topic, partition, offset = source
            self.user_partitions[outcome.user_id] = partition
            item_side = offset >= self.item_positions.get((topic, partition), 0)
            if item_side:
                self.item_positions[(topic, partition)] = offset + 1
                self.item_partitions_learned.add((topic, partition))
        learn = self.engine.learn if item_side else self._learn_user_side
        failure = self._apply(learn, outcome)
        if failure is not None:
            return failure  # not remembered as seen: a replay after the fix is learned
        self._recent_ids.add(outcome.event_id)
        self.accepted[outcome.type.value] += 1
        self._dirty[outcome.user_id] = None
        self.freshness.accepted(outcome.user_id, produced_at)
        self._user_context[outcome.user_id] = self._context(outcome.country, outcome.device)
        items = self.engine.items
        self._history.learn(outcome, items.names(items.rows[outcome.item_id]))
        self.metrics.on_event(outcome)
        self.last_event_processed_at = self.clock()
        if self.first_event_processed_at is None:
            self.first_event_processed_at = self.last_event_processed_at
        return outcome

    def _context(self, country: str | None, device: str | None) -> tuple[str | None, str | None]:
        """``(country, device)``, as one tuple shared by every user with it (a tuple and two
        strings of every event would be ~100 bytes per user); past ``_MAX_CONTEXTS``
        distinct pairs (free-form devices), a new pair is not shared."""
        context = (country, device)
        shared = self._contexts.get(context)
        if shared is None:
            if len(self._contexts) >= _MAX_CONTEXTS:
                return context
            shared = self._contexts[context] = context
        return shared

    def _learn_user_side(self, event: Interaction) -> None:
        self.engine.learn(event, item_side=False)

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
            and not self.engine.items.in_catalog(event.item_id)
        ):
            return Rejection(
                Reason.UNKNOWN_ITEM,
                f"item {event.item_id!r} is not in the catalog",
                "data.item_id",
            )
        if self.forgotten:
            forgotten_at = self.forgotten.get(event.user_id)
            if forgotten_at is not None and event.timestamp <= forgotten_at:
                return Rejection(
                    Reason.USER_FORGOTTEN,
                    f"the user was forgotten at {format_time(forgotten_at)} and this event "
                    "occurred no later",
                    "data.occurred_at",
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
        self.catalog_items += 1
        return outcome

    def ingest_deletion(
        self, raw: bytes | None, *, key: bytes | None, partition: int | None = None
    ) -> DeletionRequest | Rejection:
        """Apply one message of the deletions topic (:meth:`forget`), or say why it was rejected.

        ``partition`` is the message's partition (the user's: requests are keyed by user).

        A request dated further ahead of the worker's clock than ``max_event_future``
        is refused (it would refuse the user's events until then). An old request is
        applied, however old: forgetting is never refused for being late.
        """
        outcome = decode_deletion_request(raw, key=key, max_bytes=self.max_event_bytes)
        if not isinstance(outcome, Rejection):
            now = self.clock()
            if outcome.requested_at > now + self.max_event_future:
                outcome = Rejection(
                    Reason.TIMESTAMP_IN_FUTURE,
                    f"requested_at is {outcome.requested_at - now:.0f}s ahead of the worker's "
                    f"clock (limit {self.max_event_future:.0f}s)",
                    "data.requested_at",
                )
        if isinstance(outcome, Rejection):
            self.rejected[outcome.reason] += 1
            return outcome
        request = outcome
        if partition is not None:
            self.user_partitions[request.user_id] = partition
        failure = self._apply(lambda r: self.forget(r.user_id, at=r.requested_at), request)
        return request if failure is None else failure

    def forget(self, user_id: str, *, at: float) -> bool:
        """Forget ``user_id`` as of ``at`` (epoch seconds); ``True`` if the engine knew them.

        - The engine drops the user's state and factors (:meth:`Engine.forget_user`):
          everything learned so far, including events after ``at`` that arrived first.
        - No list is published for them from what was learned before (they leave
          the publish queue; :meth:`recommend` refuses a list until they are back).
        - Their events that occurred at or before ``at`` are refused from now on as
          ``user_forgotten``: a replay cannot bring the user back. Events that
          occurred after ``at`` are new activity and are learned as usual.

        Idempotent: forgetting again changes nothing but may move the deletion time
        later (never earlier). The caller publishes the tombstone of the user's list.
        """
        found = self.engine.forget_user(user_id)
        self._dirty.pop(user_id, None)
        self._quick_since.pop(user_id, None)
        previous = self.forgotten.pop(user_id, None)  # re-inserted: newest deletion last
        self.forgotten[user_id] = at if previous is None else max(previous, at)
        self._bound_forgotten()
        self.deletions_applied += 1
        return found

    def _bound_forgotten(self) -> None:
        """Drop deletions too old to matter, then the oldest ones past the cap."""
        if self.max_event_age:
            horizon = self.clock() - self.max_event_age
            # events at or before such a deletion are refused as too old anyway;
            # stops at the first recent one (memory order, so a conservative sweep)
            while self.forgotten:
                oldest, at = next(iter(self.forgotten.items()))
                if at >= horizon:
                    break
                del self.forgotten[oldest]
                if not self.engine.known_user(oldest):
                    self.user_partitions.pop(oldest, None)
        while len(self.forgotten) > self.forgotten_users_max:
            oldest = next(iter(self.forgotten))
            del self.forgotten[oldest]
            if not self.engine.known_user(oldest):
                self.user_partitions.pop(oldest, None)
            self.forgotten_evicted += 1
            logger.warning(
                "over %d forgotten users: the oldest deletion is no longer enforced "
                "(that user's old events would be learned if replayed)",
                self.forgotten_users_max,
            )

    def wants_list(self, user_id: str) -> bool:
        """Whether a list may be published for ``user_id``: not forgotten, or back since."""
        return user_id not in self.forgotten or self.engine.known_user(user_id)

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

    def take_reranks(self, limit: int) -> list[str]:
        """Up to ``limit`` users whose latest list was quick at least :attr:`rerank_after`
        ago, oldest first, taken off the queue: for :meth:`recommend` with ``rerank``."""
        due = self.clock() - self.rerank_after
        users = []
        for user_id, since in self._quick_since.items():
            if since > due or len(users) >= limit:
                break
            users.append(user_id)
        for user_id in users:
            del self._quick_since[user_id]
        return users

    def mark_dirty(self, user_id: str) -> None:
        """Ask for a fresh list for ``user_id`` (e.g. after a failed publish)."""
        if self.wants_list(user_id):
            self._dirty[user_id] = None

    def catalog_entry(self, item_id: str) -> CatalogItem | None:
        """What the catalog says about ``item_id`` (``None`` if never announced)."""
        items = self.engine.items
        row = items.row(item_id)
        return None if row is None else items.entry(row)

    def recommend(self, user_id: str, *, rerank: bool = False) -> RecommendationList | None:
        """The list to publish for ``user_id``: the arm's list, then editorial rules.

        A personalised user with a recent full list gets a quick list (their last
        list patched for their new events, :meth:`Engine.quick_recommend`) and joins
        the re-rank queue (:meth:`take_reranks`); ``rerank`` asks for a full ranking.
        ``None`` if they were forgotten since being queued. Counted as published
        (lists and per-arm metrics) when called.
        """
        if not self.wants_list(user_id):
            return None
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
            quick = None if rerank else self.engine.quick_recommend(user_id, now=now)
            self._quick_since.pop(user_id, None)
            if quick is None:
                recommendations = self.engine.recommend(user_id, now=now)
                self.lists_reranked += rerank
            else:
                recommendations = quick
                self._quick_since[user_id] = now
                self.lists_quick += 1
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

    # ------------------------------------------------------------------ checkpoints
    def advance(self, topic: str, partition: int, next_offset: int) -> None:
        """Record that every record of ``topic``/``partition`` before ``next_offset`` is in
        this state (learned, applied or dead-lettered)."""
        self.positions[(topic, partition)] = next_offset

    def position(self, topic: str, partition: int) -> int | None:
        """The next offset of ``topic``/``partition`` not reflected in this state, if known."""
        return self.positions.get((topic, partition))

    # ------------------------------------------------------------------ partitions
    def users_of(self, partitions: set[int]) -> list[str]:
        """Users whose events come from ``partitions`` (forgotten users included)."""
        return [user for user, p in self.user_partitions.items() if p in partitions]

    def export_partitions(self, partitions: set[int]) -> dict[str, Any]:
        """Everything this pipeline keeps about the users of ``partitions``, portable to
        another worker's pipeline (item ids, not this engine's rows), with the input
        positions it covers. See :meth:`import_partitions`.
        """
        users = self.users_of(partitions)
        known = [user for user in users if self.engine.known_user(user)]
        return {
            "partitions": sorted(partitions),
            "user_partitions": {user: self.user_partitions[user] for user in users},
            "engine": self.engine.export_users(known),
            "history": self._history.export_users(known),
            "context": {u: self._user_context[u] for u in users if u in self._user_context},
            "forgotten": {u: self.forgotten[u] for u in users if u in self.forgotten},
            "dirty": [user for user in users if user in self._dirty],
            "positions": {
                tp: offset for tp, offset in self.positions.items() if tp[1] in partitions
            },
            # not partitioned: the whole window goes (ids of other partitions are harmless)
            "recent_ids": self._recent_ids,
        }

    def import_partitions(self, exported: dict[str, Any]) -> int:
        """Take over the users of another worker's :meth:`export_partitions`.

        Whatever this pipeline held of those partitions is dropped first; their
        input positions become the exporter's (records below them are in the
        imported state). The item replica and :attr:`item_positions` stay this
        worker's own. The exporter's de-dup window is merged into this one.
        Returns how many users were imported.
        """
        partitions = set(exported["partitions"])
        self.drop_partitions(partitions)
        self.user_partitions.update(exported["user_partitions"])
        imported = self.engine.import_users(exported["engine"])
        self._history.import_users(exported["history"])
        for user, (country, device) in exported["context"].items():
            self._user_context[user] = self._context(country, device)
        for user, at in exported["forgotten"].items():
            self.forgotten[user] = max(at, self.forgotten.get(user, at))
        self._bound_forgotten()
        for user in exported["dirty"]:
            self._dirty[user] = None
        self.positions.update(exported["positions"])
        self._recent_ids.merge(exported["recent_ids"])
        return imported

    def drop_partitions(self, partitions: set[int]) -> int:
        """Free what is kept about the users of ``partitions`` (now another worker's) and
        forget the positions: a worker that gets them back takes the newest state there
        is (stream.handover). Returns how many users were dropped."""
        if not partitions:
            return 0
        users = self.users_of(partitions)
        self.engine.drop_users(users)
        self._history.drop_users(users)
        for user in users:
            del self.user_partitions[user]
            self._user_context.pop(user, None)
            self._dirty.pop(user, None)
            self._quick_since.pop(user, None)
            self.forgotten.pop(user, None)
            self.freshness.forget(user)
        for tp in [tp for tp in self.positions if tp[1] in partitions]:
            del self.positions[tp]
        return len(users)

    _STATE = (
        "_recent_ids",
        "_dirty",
        "accepted",
        "rejected",
        "catalog_items",
        "lists_published",
        "lists_quick",
        "lists_reranked",
        "first_event_processed_at",
        "last_event_processed_at",
        "positions",
        "forgotten",
        "deletions_applied",
        "forgotten_evicted",
        "tombstones_published",
        "metrics",
        "_history",
        "_user_context",
        "user_partitions",
        "item_positions",
        "item_partitions_learned",
        "item_update_offsets",
        "pending_item_updates",
        "item_update_sequence",
    )

    def snapshot(self) -> bytes:
        """Everything this pipeline has learned, with the input positions it covers.

        Settings (limits, the clock) are not part of it: a restored pipeline runs
        with the settings it was created with. ``catalog_ready`` is not either: it
        describes this run's reading of the catalog topic.

        >>> from stream.engine import Engine, EngineConfig
        >>> from stream.contracts import parse_time
        >>> clock = lambda: parse_time("2026-11-22T18:00:05Z")
        >>> before = Pipeline(Engine(EngineConfig(seed=0)), clock=clock)
        >>> raw = (b'{"event_id":"e1","type":"play","user_id":"u1","item_id":"i1",'
        ...        b'"occurred_at":"2026-11-22T18:00:00Z","ms_played":1000}')
        >>> _ = before.ingest_event(raw, key=b"u1", event_type=EventType.PLAY)
        >>> before.advance("plays", 0, 1)
        >>> after = Pipeline(Engine(EngineConfig(seed=0)), clock=clock)
        >>> after.restore(before.snapshot())
        >>> after.position("plays", 0), after.engine.user_counts("u1")["play"]
        (1, 1)
        >>> after.ingest_event(raw, key=b"u1", event_type=EventType.PLAY).reason
        <Reason.DUPLICATE: 'duplicate'>
        """
        state = {name: getattr(self, name) for name in self._STATE}
        return pickle.dumps(
            (_SNAPSHOT_VERSION, self.engine.snapshot(), state), protocol=pickle.HIGHEST_PROTOCOL
        )

    def restore(self, data: bytes) -> None:
        """Replace this pipeline's state by a :meth:`snapshot` (only from a trusted source)."""
        version, engine, state = pickle.loads(data)  # noqa: S301 - our own checkpoints only
        if version != _SNAPSHOT_VERSION:
            raise ValueError(
                f"pipeline snapshot version {version}, this code reads {_SNAPSHOT_VERSION}"
            )
        self.engine = Engine.restore(engine)
        for name in self._STATE:
            if name in state:  # counters added later start at 0 from older snapshots
                setattr(self, name, state[name])
        self._history.attach_items(self.engine.items)

    def delivered(self, user_id: str, encoded: bytes, *, at: float) -> None:
        """The broker acknowledged ``user_id``'s list (wire bytes ``encoded``) at ``at``.

        Samples the freshness of the events it is the first list to reflect and keeps
        it as the user's latest list for the HTTP API.
        """
        self.lists_delivered += 1
        self.freshness.delivered(user_id, at=at)
        latest = self._latest_lists
        latest[user_id] = exact_size(encoded)  # kept until evicted: no spare buffer
        latest.move_to_end(user_id)
        while len(latest) > self.served_lists:
            latest.popitem(last=False)
        if user_id in self._recent_users:
            self._recent_users.remove(user_id)
        self._recent_users.append(user_id)

    def latest_list(self, user_id: str) -> bytes | None:
        """The wire bytes of the latest list published for ``user_id``, if still kept."""
        return self._latest_lists.get(user_id)

    @property
    def users_waiting(self) -> int:
        """Users with events not yet reflected by a list."""
        return len(self._dirty)

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
            "lists_quick": self.lists_quick,
            "lists_reranked": self.lists_reranked,
            "users_due_a_rerank": len(self._quick_since),
            "lists_delivered": self.lists_delivered,
            "dead_letters": sum(self.rejected.values()),
            "freshness_seconds": self.freshness.quantiles(),
            "recently_published_users": list(reversed(self._recent_users)),
            "users_waiting_for_a_list": len(self._dirty),
            "lists_in_flight": self.lists_in_flight,
            "deletions_applied": self.deletions_applied,
            "users_forgotten": len(self.forgotten),
            "forgotten_evicted": self.forgotten_evicted,
            "tombstones_published": self.tombstones_published,
            "item_updates": {
                "sent": self.item_updates_sent,
                "applied": self.item_updates_applied,
                "skipped": self.item_updates_skipped,
                "pending": len(self.pending_item_updates),
            },
            "users_held": len(self.engine.users),
            # the partitions whose records this state holds (no walk over the users per call)
            "partitions_held": sorted({partition for _, partition in self.positions}),
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
            "quality_by_arm": self.metrics.quality_by_arm(),
            "wrapped": {
                "users": len(self._history.users),
                "answered": self.wrapped_answered,
            },
        }
