"""What a worker measures about itself: freshness, consumer lag, and the Prometheus registry.

No Faust import: the agents hand in what Faust knows (partition offsets) as plain
values, so the bookkeeping is unit-tested without a broker.

Freshness is measured per event: from the event's Kafka message timestamp (set by
its producer, or by the broker for topics with ``LogAppendTime``) to the moment the
first list that reflects it was acknowledged by the broker. Producer and worker
clocks are compared, so a skewed producer clock shifts the figures.

>>> freshness = Freshness(clock=lambda: 100.0)
>>> freshness.accepted("u1", produced_at=99.0)
>>> freshness.accepted("u1", produced_at=99.5)
>>> freshness.delivered("u1", at=100.0)
2
>>> freshness.quantiles()
{'p50': 0.75, 'p99': 0.995, 'samples': 2, 'window_seconds': 60.0}
>>> freshness.delivered("u1", at=101.0)  # nothing pending any more
0
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client import Metric

    from stream.pipeline import Pipeline

#: Upper bounds (seconds) of the freshness histogram's buckets.
FRESHNESS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Freshness:
    """Per-event freshness: Kafka timestamp of an accepted event -> its list delivered.

    Parameters
    ----------
    window_seconds
        :meth:`quantiles` covers samples delivered this recently (the dashboard's view).
    max_samples
        At most this many recent samples are kept for :meth:`quantiles`.
    max_pending_per_user
        Timestamps kept per user between two lists; beyond that (a user with a huge
        backlog) the newest are not sampled and :attr:`dropped` counts them. The
        oldest, which set the tail, are always kept.
    clock
        Wall clock of :meth:`quantiles`' window.

    Notes
    -----
    Every sample is also observed by :attr:`histogram` (a Prometheus histogram, not
    registered anywhere until :class:`WorkerMetrics` registers it). An event learned
    but never published (its user's list failed for good) is never sampled.
    """

    def __init__(
        self,
        *,
        window_seconds: float = 60.0,
        max_samples: int = 20_000,
        max_pending_per_user: int = 1_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_samples = max_samples
        self.max_pending_per_user = max_pending_per_user
        self.clock = clock
        self.histogram = Histogram(
            "encore_freshness_seconds",
            "Seconds from an event's Kafka timestamp to the broker acknowledging the first "
            "recommendation list that reflects it.",
            buckets=FRESHNESS_BUCKETS,
            registry=None,
        )
        # Kafka timestamps of each user's events not yet in a delivered list: packed
        # doubles (8 bytes each, not a float object and a list slot).
        self._pending: dict[str, array[float]] = {}
        # The newest max_samples samples, a ring: delivery times and freshness seconds
        # (numpy, so a quantile over them is not a Python loop: /stats/ is polled).
        self._delivered_at = np.zeros(max_samples, dtype=np.float64)
        self._seconds = np.zeros(max_samples, dtype=np.float64)
        self._n_samples = 0  # ever written; the newest is at (n - 1) % max_samples
        self.dropped = 0

    def accepted(self, user_id: str, produced_at: float | None) -> None:
        """An event of ``user_id`` with Kafka timestamp ``produced_at`` was learned."""
        if produced_at is None:
            return
        pending = self._pending.get(user_id)
        if pending is None:
            self._pending[user_id] = array("d", (produced_at,))
        elif len(pending) < self.max_pending_per_user:
            pending.append(produced_at)
        else:
            self.dropped += 1

    def delivered(self, user_id: str, *, at: float) -> int:
        """``user_id``'s list reached the broker at ``at``; returns how many events it freshened."""
        pending = self._pending.pop(user_id, None)
        if not pending:
            return 0
        observe = self.histogram.observe
        for produced_at in pending:
            observe(max(0.0, at - produced_at))
        # The newest samples fill the ring (a backlog longer than it keeps only its tail).
        kept = np.frombuffer(pending, dtype=np.float64)[-self.max_samples :]
        start = self._n_samples % self.max_samples
        positions = (start + np.arange(len(kept))) % self.max_samples
        self._delivered_at[positions] = at
        self._seconds[positions] = np.maximum(0.0, at - kept)
        self._n_samples += len(kept)
        return len(pending)

    def forget(self, user_id: str) -> None:
        """Stop timing ``user_id``'s pending events (their partition moved to another worker)."""
        self._pending.pop(user_id, None)

    def quantiles(self, qs: Sequence[float] = (0.5, 0.99)) -> dict[str, Any]:
        """p50/p99 (by default) of samples delivered in the last ``window_seconds``.

        Values are ``None`` when no list was delivered in the window.
        """
        since = self.clock() - self.window_seconds
        filled = min(self._n_samples, self.max_samples)
        values = self._seconds[:filled][self._delivered_at[:filled] >= since]
        figures: dict[str, Any] = {}
        for q in qs:
            name = f"p{q * 100:g}"
            figures[name] = round(float(np.quantile(values, q)), 6) if len(values) else None
        figures["samples"] = len(values)
        figures["window_seconds"] = self.window_seconds
        return figures


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """Where a consumer stands on one assigned partition (offsets; ``None`` = not known yet).

    ``highwater`` is the log end offset from the consumer's latest fetch, ``committed``
    the group's committed offset (next to read), ``processed`` the next offset the
    worker has not yet processed.

    >>> PartitionProgress("plays", 0, highwater=120, committed=100, processed=115).lag
    20
    >>> PartitionProgress("plays", 0, highwater=120, committed=100, processed=115).processing_lag
    5
    >>> PartitionProgress("plays", 1, highwater=None, committed=None, processed=None).lag is None
    True
    """

    topic: str
    partition: int
    highwater: int | None
    committed: int | None
    processed: int | None

    @property
    def lag(self) -> int | None:
        """Messages after the committed offset, as Kafka's group tools report it.

        With nothing committed yet the group starts at the beginning (offset 0 assumed).
        """
        if self.highwater is None:
            return None
        return max(0, self.highwater - (self.committed or 0))

    @property
    def processing_lag(self) -> int | None:
        """Messages not yet processed (ahead of ``committed`` until the next commit)."""
        if self.highwater is None:
            return None
        start = self.processed if self.processed is not None else self.committed
        return max(0, self.highwater - (start or 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "highwater": self.highwater,
            "committed": self.committed,
            "processed": self.processed,
            "lag": self.lag,
            "processing_lag": self.processing_lag,
        }


def lag_summary(progress: Iterable[PartitionProgress]) -> dict[str, Any]:
    """Totals and per-partition rows for the stats JSON.

    >>> lag_summary([PartitionProgress("plays", 0, 10, 4, 8),
    ...              PartitionProgress("plays", 1, 5, 5, 5)])  # doctest: +ELLIPSIS
    {'total': 6, 'processing_total': 2, 'partitions': [{'topic': 'plays', ...}, {...}]}
    """
    rows = sorted(progress, key=lambda p: (p.topic, p.partition))
    return {
        "total": sum(p.lag or 0 for p in rows),
        "processing_total": sum(p.processing_lag or 0 for p in rows),
        "partitions": [p.to_json() for p in rows],
    }


class _PipelineCollector(Collector):
    """Reads the pipeline's own counters at scrape time: nothing is counted twice."""

    def __init__(
        self, pipeline: Pipeline, progress: Callable[[], Iterable[PartitionProgress]]
    ) -> None:
        self.pipeline = pipeline
        self.progress = progress

    def collect(self) -> Iterator[Metric]:
        pipeline = self.pipeline
        events = CounterMetricFamily(
            "encore_events", "Events learned, by type (plays, skips, replays).", labels=["type"]
        )
        for kind in ("play", "skip", "replay"):
            events.add_metric([kind], pipeline.accepted.get(kind, 0))
        yield events
        dead = CounterMetricFamily(
            "encore_dead_letters", "Messages dead-lettered, by reason code.", labels=["reason"]
        )
        for reason, count in sorted(pipeline.rejected.items()):
            dead.add_metric([reason], count)
        yield dead
        yield CounterMetricFamily(
            "encore_lists_published",
            "Recommendation lists acknowledged by the broker.",
            value=pipeline.lists_delivered,
        )
        made = CounterMetricFamily(
            "encore_lists_made",
            "Lists made, by kind: quick (the last list patched for new events), full "
            "(ranked for new events), rerank (ranked again in the background after a quick one).",
            labels=["kind"],
        )
        full = pipeline.lists_published - pipeline.lists_quick - pipeline.lists_reranked
        for kind, count in (
            ("quick", pipeline.lists_quick),
            ("full", full),
            ("rerank", pipeline.lists_reranked),
        ):
            made.add_metric([kind], count)
        yield made
        yield CounterMetricFamily(
            "encore_catalog_messages",
            "Catalog items applied.",
            value=pipeline.catalog_items,
        )
        yield CounterMetricFamily(
            "encore_freshness_samples_dropped",
            "Accepted events not sampled for freshness (over the per-user cap).",
            value=pipeline.freshness.dropped,
        )
        yield from _arm_families(pipeline.metrics.quality_by_arm())
        yield GaugeMetricFamily(
            "encore_users_waiting_for_a_list",
            "Users with events not yet reflected by a published list.",
            value=pipeline.users_waiting,
        )
        lag = GaugeMetricFamily(
            "encore_consumer_lag",
            "Messages after the group's committed offset (highwater - committed).",
            labels=["topic", "partition"],
        )
        processing = GaugeMetricFamily(
            "encore_consumer_processing_lag",
            "Messages this worker has not processed yet (highwater - processed position).",
            labels=["topic", "partition"],
        )
        assigned = 0
        for p in self.progress():
            assigned += 1
            labels = [p.topic, str(p.partition)]
            if p.lag is not None:
                lag.add_metric(labels, p.lag)
            if p.processing_lag is not None:
                processing.add_metric(labels, p.processing_lag)
        yield lag
        yield processing
        yield GaugeMetricFamily(
            "encore_assigned_partitions", "Partitions assigned to this worker.", value=assigned
        )


#: per-arm gauges: (figure of ``quality_by_arm``, metric name, help)
_ARM_GAUGES = (
    ("users", "encore_arm_users", "Users whose latest published list is from this arm."),
    (
        "play_through_rate",
        "encore_arm_play_through_rate",
        "Attributed plays reaching 80% of the item / attributed events, per arm.",
    ),
    ("skip_rate", "encore_arm_skip_rate", "Attributed skips / attributed events, per arm."),
    (
        "plays_per_user",
        "encore_arm_plays_per_user",
        "Plays and replays of the arm's users (from a list or not) per user with a list.",
    ),
)


def _arm_families(quality: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """Online quality per experiment arm, as read from the pipeline's experiment metrics.

    A rate with nothing to divide by yet (``None``) has no sample for its arm.
    """
    for figure, name, documentation in _ARM_GAUGES:
        family = GaugeMetricFamily(name, documentation, labels=["arm"])
        for arm, figures in quality.items():
            if figures[figure] is not None:
                family.add_metric([arm], figures[figure])
        yield family
    events = CounterMetricFamily(
        "encore_arm_attributed_events",
        "Plays, replays and skips whose source names a list of this arm.",
        labels=["arm"],
    )
    for arm, figures in quality.items():
        events.add_metric([arm], figures["attributed_events"])
    yield events


class WorkerMetrics:
    """The worker's Prometheus registry (its own, not the process-global one).

    Parameters
    ----------
    pipeline
        Whose counters and freshness histogram are exported.
    progress
        Returns the consumer's :class:`PartitionProgress` per assigned partition.

    Examples
    --------
    >>> from prometheus_client.parser import text_string_to_metric_families
    >>> from stream.engine import Engine, EngineConfig
    >>> from stream.pipeline import Pipeline
    >>> pipeline = Pipeline(Engine(EngineConfig()))
    >>> pipeline.rejected["invalid_json"] += 2
    >>> text = WorkerMetrics(pipeline).render().decode()
    >>> families = {f.name: f for f in text_string_to_metric_families(text)}
    >>> [(s.labels, s.value) for s in families["encore_dead_letters"].samples]
    [({'reason': 'invalid_json'}, 2.0)]
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        pipeline: Pipeline,
        progress: Callable[[], Iterable[PartitionProgress]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_PipelineCollector(pipeline, progress))
        self.registry.register(pipeline.freshness.histogram)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
