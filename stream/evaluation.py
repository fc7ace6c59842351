"""Prequential (test-then-learn) evaluation of recommenders over a time-ordered log.

Every event is first used to test the model, then to train it, so each event is
predicted by a model that has seen exactly the events before it -- the same
situation the engine is in when it runs on the stream.

For each event, in time order:

1. If it is *eligible* -- a play or replay, by a user with at least one earlier
   event, of an item that user never interacted with before -- ask the model for
   ``rank(user, k, now=event.timestamp)`` and score a hit (recall@k) and its
   discounted gain ``1 / log2(position + 2)`` (NDCG@k with one relevant item).
2. If the model has ``predict_skip``, record ``(predict_skip(event), is it a skip)``
   for the skip ROC AUC.
3. ``learn(event)``.

Repeat listens are never eligible: a model that just replays the user's history
would otherwise look excellent. Catalog coverage is the share of known items
that appeared in at least one evaluated top-k.

>>> from stream.engine.baselines import PopularityRecommender
>>> from stream.models import EventType, Interaction
>>> log = [Interaction(f"e{n}", user, item, EventType.PLAY, float(n))
...        for n, (user, item) in enumerate(
...            [("u1", "a"), ("u2", "a"), ("u2", "b"), ("u1", "b"), ("u3", "c"), ("u3", "b")])]
>>> report = evaluate(log, PopularityRecommender(), k=1, name="popularity")
>>> # u2->b: b unknown yet, a miss; u1->b: top-1 unseen is b, a hit; u3->b: top-1 is a, a miss
>>> (report.eligible, report.hits, report.recall_at_k)
(3, 1, 0.333...)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import asdict, dataclass
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from stream.models import CatalogItem, EventType, Interaction

__all__ = [
    "MODEL_NAMES",
    "RECENT_POPULARITY_HALF_LIFE",
    "available_models",
    "EvaluationReport",
    "Recommender",
    "Tally",
    "evaluate",
    "format_report",
    "make_model",
    "out_of_order",
    "report_table",
    "roc_auc",
]


@runtime_checkable
class Recommender(Protocol):
    """What a model must offer to be evaluated (and to run behind the agents).

    Contract
    --------
    - ``upsert_item`` gives catalog metadata. It may be called any number of times
      for the same item (the latest wins), or never at all: CSV logs carry no
      catalog, so a model must work from events alone.
    - ``learn`` receives each event exactly once, in time order, after the event
      has been used for testing. It must not mutate the event.
    - ``rank`` returns at most ``k`` item ids, best first, none of which the user
      ever interacted with (play, skip or replay). It is a pure query: calling it
      must not change any state, so evaluating a copy gives the same result. For
      an unknown user it returns a sensible cold-start ranking. Fewer than ``k``
      ids are allowed when the model knows fewer candidates.
    - ``predict_skip`` is optional (detected with ``getattr``): the probability
      that this event is a skip, computed *before* learning it, and also a pure
      query.

    Not guaranteed: that ``rank`` is called at all for a given user, or with the
    same ``k`` each time, or that ``now`` is later than the last learned event's
    time by any margin (they are often equal).
    """

    def upsert_item(self, item: CatalogItem) -> None: ...

    def learn(self, event: Interaction) -> None: ...

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Figures of one prequential run.

    Attributes
    ----------
    model
        The model's name (registry name when built with :func:`make_model`).
    k
        Length of the evaluated rankings.
    events, plays, skips, replays
        Events processed, in total and per type.
    eligible
        Events that were tested (positive, user known, item new to the user).
    hits
        Eligible events whose item was in the top ``k``.
    recall_at_k, ndcg_at_k
        Means over eligible events (``0.0`` when there were none).
    coverage
        Distinct items in any evaluated top-k / ``items_known``.
    items_recommended, items_known
        Numerator and denominator of ``coverage``: ``items_known`` is the catalog
        plus any item of the log missing from it (just the log's items without a
        catalog).
    skip_auc
        ROC AUC of ``predict_skip`` for "this event is a skip" over all events;
        ``None`` when the model has no ``predict_skip`` or the log has only one
        class.
    invalid_recommendations
        Ranked ids that broke the contract (already met by the user, duplicates,
        or beyond ``k``); should be 0.
    seconds, events_per_second
        Wall clock of the whole loop (testing, learning and bookkeeping).
    processes, sync_every
        How the run was made: in one process (``sync_every`` ``None``), or split
        by user over several processes that exchanged item updates every
        ``sync_every`` events (:mod:`stream.parallel_evaluation`).
    """

    model: str
    k: int
    events: int
    plays: int
    skips: int
    replays: int
    eligible: int
    hits: int
    recall_at_k: float
    ndcg_at_k: float
    coverage: float
    items_recommended: int
    items_known: int
    skip_auc: float | None
    invalid_recommendations: int
    seconds: float
    events_per_second: float
    processes: int = 1
    sync_every: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (field names as keys).

        >>> report = EvaluationReport("m", 10, 3, 2, 1, 0, 1, 1, 1.0, 1.0, 0.5, 1, 2,
        ...                           None, 0, 0.5, 6.0)
        >>> report.to_dict()["recall_at_k"], report.to_dict()["skip_auc"]
        (1.0, None)
        """
        return asdict(self)


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Exact ROC AUC from ranks (Mann-Whitney U); tied scores count one half.

    It is the probability that a random positive scores higher than a random
    negative.

    Parameters
    ----------
    scores
        Higher means "more likely positive".
    labels
        ``True`` for positives.

    Returns
    -------
    float
        ``nan`` when either class is absent.

    Examples
    --------
    Positives 0.8 and 0.4 against negatives 0.4 and 0.1: of the four pairs, three
    are ordered right and one is tied, so ``(3 + 0.5) / 4``.

    >>> roc_auc([0.8, 0.4, 0.4, 0.1], [True, True, False, False])
    0.875
    >>> roc_auc([0.3, 0.3], [True, False])
    0.5
    """
    values = np.asarray(scores, dtype=float)
    positive = np.asarray(labels, dtype=bool)
    n_positive = int(positive.sum())
    n_negative = positive.shape[0] - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Average rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], sorted_values.shape[0]]
    run_ranks = (starts + 1 + ends) / 2.0
    ranks = np.empty_like(values)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative))


def evaluate(
    events: Iterable[Interaction],
    model: Recommender,
    *,
    catalog: Sequence[CatalogItem] | None = None,
    k: int = 10,
    progress: bool = False,
    limit: int | None = None,
    name: str | None = None,
) -> EvaluationReport:
    """Run the prequential protocol of this module over ``events``.

    Parameters
    ----------
    events
        Interactions in time order (equal times are fine); a decreasing timestamp
        raises ``ValueError`` (sort the log first, e.g. with
        ``stream.eventlog.sorted_by_time``).
    model
        Any :class:`Recommender`; it is trained in place.
    catalog
        Items given to ``model.upsert_item`` before the first event, and the
        denominator of coverage.
    k
        Ranking length for recall, NDCG and coverage.
    progress
        Show a ``rich`` progress bar with events/s on stderr.
    limit
        Stop after this many events.
    name
        Name in the report; defaults to the model's ``name`` attribute or class.

    Returns
    -------
    EvaluationReport

    Examples
    --------
    >>> from stream.engine.baselines import PopularityRecommender
    >>> from stream.models import EventType, Interaction
    >>> log = [Interaction("e1", "u1", "a", EventType.PLAY, 1.0),
    ...        Interaction("e2", "u2", "b", EventType.PLAY, 2.0),
    ...        Interaction("e3", "u2", "a", EventType.PLAY, 3.0),   # eligible, "a" ranked 1st
    ...        Interaction("e4", "u2", "a", EventType.REPLAY, 4.0)]  # a repeat: not eligible
    >>> report = evaluate(log, PopularityRecommender(), k=10)
    >>> report.eligible, report.recall_at_k, report.ndcg_at_k, report.replays
    (1, 1.0, 1.0, 1)
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    model_name = name or getattr(model, "name", None) or type(model).__name__
    tally = Tally(k)
    tally.add_catalog(model, catalog)
    bar = _ProgressBar(_expected_total(events, limit)) if progress else None
    started = time.perf_counter()
    try:
        tally.consume(events, model, limit=limit, bar=bar)
    finally:
        if bar is not None:
            bar.close(tally.processed)
    return tally.report(model_name, time.perf_counter() - started)


class Tally:
    """What the protocol counts over the events one model was tested and trained on.

    Tallies of models that answered for disjoint sets of users add up
    (:meth:`merge`): :mod:`stream.parallel_evaluation` runs one per process.
    ``seen_by_user`` (the items each user met, for eligibility) is the model
    side's bookkeeping and is not merged.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.processed = 0
        self.counts = dict.fromkeys(EventType, 0)
        self.eligible = 0
        self.hits = 0
        self.invalid = 0
        self.gain = 0.0
        self.last_time = -math.inf
        self.known_items: set[str] = set()
        self.recommended: set[str] = set()
        self.skip_scores: list[float] = []
        self.skip_labels: list[bool] = []
        self.seen_by_user: dict[str, set[str]] = {}
        self.has_skip_model = False

    def add_catalog(self, model: Recommender, catalog: Iterable[CatalogItem] | None) -> None:
        """Give ``model`` the catalog and count its items as known (coverage's denominator)."""
        if catalog is None:
            return
        for item in catalog:
            model.upsert_item(item)
            self.known_items.add(item.item_id)

    def consume(
        self,
        events: Iterable[Interaction],
        model: Recommender,
        *,
        limit: int | None = None,
        bar: _ProgressBar | None = None,
    ) -> None:
        """Test ``model`` on each event, then train it (the protocol), up to ``limit`` in all."""
        k = self.k
        predict_skip: Callable[[Interaction], float] | None = getattr(model, "predict_skip", None)
        self.has_skip_model = predict_skip is not None
        counts = self.counts
        seen_by_user = self.seen_by_user
        eligible, hits, invalid, gain = self.eligible, self.hits, self.invalid, self.gain
        last_time = self.last_time
        processed = self.processed
        discount = [1.0 / math.log2(position + 2) for position in range(k)]
        # The loop runs once per event: the model's methods and the containers' methods
        # are looked up once here, not per event.
        rank, learn = model.rank, model.learn
        add_known, add_recommended = self.known_items.add, self.recommended.update
        add_score, add_label = self.skip_scores.append, self.skip_labels.append
        seen_of = seen_by_user.get
        skip = EventType.SKIP
        try:
            for event in events:
                if limit is not None and processed >= limit:
                    break
                at = event.timestamp
                if at < last_time:
                    raise out_of_order(event, last_time)
                last_time = at
                processed += 1
                kind = event.type
                counts[kind] += 1
                item_id = event.item_id
                add_known(item_id)
                seen = seen_of(event.user_id)

                if seen is not None and kind is not skip and item_id not in seen:
                    eligible += 1
                    ranking = rank(event.user_id, k, now=at)
                    invalid += max(0, len(ranking) - k) + _contract_breaks(ranking[:k], seen)
                    ranking = ranking[:k]
                    add_recommended(ranking)
                    if item_id in ranking:
                        hits += 1
                        gain += discount[ranking.index(item_id)]

                if predict_skip is not None:
                    add_score(predict_skip(event))
                    add_label(kind is skip)

                learn(event)
                if seen is None:
                    seen_by_user[event.user_id] = {item_id}
                else:
                    seen.add(item_id)
                if bar is not None and processed % 2048 == 0:
                    bar.advance(processed)
        finally:
            self.eligible, self.hits, self.invalid, self.gain = eligible, hits, invalid, gain
            self.last_time = last_time
            self.processed = processed

    def merge(self, other: Tally) -> None:
        """Add the counts of ``other`` (a model that answered for other users) to these."""
        if other.k != self.k:
            raise ValueError(f"cannot merge a tally at k={other.k} into one at k={self.k}")
        self.processed += other.processed
        for kind, count in other.counts.items():
            self.counts[kind] += count
        self.eligible += other.eligible
        self.hits += other.hits
        self.invalid += other.invalid
        self.gain += other.gain
        self.last_time = max(self.last_time, other.last_time)
        self.known_items |= other.known_items
        self.recommended |= other.recommended
        self.skip_scores += other.skip_scores
        self.skip_labels += other.skip_labels
        self.has_skip_model = self.has_skip_model or other.has_skip_model

    def without_users(self) -> Tally:
        """A copy without ``seen_by_user``: what a merge needs, to send between processes."""
        kept = copy.copy(self)
        kept.seen_by_user = {}
        return kept

    def report(self, model_name: str, seconds: float, **how: Any) -> EvaluationReport:
        """The :class:`EvaluationReport` of these counts for ``seconds`` of wall clock.

        ``how`` fills the report's fields about how the run was made
        (``processes``, ``sync_every``).
        """
        auc = roc_auc(self.skip_scores, self.skip_labels) if self.has_skip_model else math.nan
        eligible, known = self.eligible, self.known_items
        return EvaluationReport(
            model=model_name,
            k=self.k,
            events=self.processed,
            plays=self.counts[EventType.PLAY],
            skips=self.counts[EventType.SKIP],
            replays=self.counts[EventType.REPLAY],
            eligible=eligible,
            hits=self.hits,
            recall_at_k=self.hits / eligible if eligible else 0.0,
            ndcg_at_k=self.gain / eligible if eligible else 0.0,
            coverage=len(self.recommended) / len(known) if known else 0.0,
            items_recommended=len(self.recommended),
            items_known=len(known),
            skip_auc=None if math.isnan(auc) else auc,
            invalid_recommendations=self.invalid,
            seconds=seconds,
            events_per_second=self.processed / seconds if seconds > 0 else math.inf,
            **how,
        )


def out_of_order(event: Interaction, last_time: float) -> ValueError:
    """The error for ``event`` coming after an event at the later ``last_time``.

    >>> from stream.models import EventType, Interaction
    >>> out_of_order(Interaction("e2", "u", "i", EventType.PLAY, 1.0), 2.0)
    ValueError("event 'e2' at 1.0 comes after one at 2.0: the log must be in time order")
    """
    return ValueError(
        f"event {event.event_id!r} at {event.timestamp} comes after one at "
        f"{last_time}: the log must be in time order"
    )


def _contract_breaks(ranking: list[str], seen: set[str]) -> int:
    """Ids the user already met, plus repeated ids."""
    return sum(1 for item_id in ranking if item_id in seen) + len(ranking) - len(set(ranking))


def _expected_total(events: Iterable[Interaction], limit: int | None) -> int | None:
    total = len(events) if isinstance(events, Sized) else None
    if limit is not None:
        total = limit if total is None else min(total, limit)
    return total


class _ProgressBar:
    """A rich progress bar on stderr showing events done and events/s."""

    def __init__(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]evaluating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("evaluate", total=total, rate="")
        self._started = time.perf_counter()
        self._progress.start()

    def advance(self, processed: int) -> None:
        elapsed = time.perf_counter() - self._started
        rate = f"{processed / elapsed:,.0f} events/s" if elapsed > 0 else ""
        self._progress.update(self._task, completed=processed, rate=rate)

    def close(self, processed: int) -> None:
        self.advance(processed)
        self._progress.stop()


# --------------------------------------------------------------------------- models

#: Names accepted by :func:`make_model`, in the order they are usually compared.
MODEL_NAMES: Final = ("engine", "popularity", "recent-popularity", "river-mf")

#: Half-life of ``"recent-popularity"``: a day follows daily charts and bursts.
RECENT_POPULARITY_HALF_LIFE: Final = 86_400.0


def available_models() -> list[str]:
    """:data:`MODEL_NAMES`, then the engine's ablations from ``stream.engine.registry``.

    >>> available_models()[:4]
    ['engine', 'popularity', 'recent-popularity', 'river-mf']
    """
    return [*MODEL_NAMES, *sorted(set(_engine_registry()) - set(MODEL_NAMES))]


def _engine_registry() -> dict[str, Callable[[int], Any]]:
    try:
        from stream.engine.registry import MODEL_FACTORIES
    except ImportError:  # the engine is optional for the baselines
        return {}
    return dict(MODEL_FACTORIES)


def make_model(name: str, seed: int = 0) -> Recommender:
    """Build a fresh model by registry name.

    Parameters
    ----------
    name
        One of :data:`MODEL_NAMES`: ``"engine"`` (``stream.engine.Engine``),
        ``"popularity"`` (all-time counts), ``"recent-popularity"`` (counts with a
        one-day half-life) or ``"river-mf"`` (:mod:`stream.engine.baselines`); or
        any other name of ``stream.engine.registry.MODEL_FACTORIES`` (the engine's
        sources alone, for ablations), see :func:`available_models`.
    seed
        Random seed of the model.

    Examples
    --------
    >>> make_model("popularity")
    PopularityRecommender(half_life=None, skip_prior_weight=5.0, seed=0)
    >>> make_model("river-mf", seed=3)
    RiverMFRecommender(kind='biased', n_factors=10, seed=3)
    >>> make_model("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'nope'; choose from engine, popularity, recent-popularity, river-mf...
    """
    if name == "engine":
        from stream.engine import Engine, EngineConfig  # imported late: a heavy, separate module

        engine: Recommender = Engine(EngineConfig(seed=seed))
        return engine
    if name == "popularity":
        from stream.engine.baselines import PopularityRecommender

        return PopularityRecommender(seed=seed)
    if name == "recent-popularity":
        from stream.engine.baselines import PopularityRecommender

        return PopularityRecommender(half_life=RECENT_POPULARITY_HALF_LIFE, seed=seed)
    if name == "river-mf":
        from stream.engine.baselines import RiverMFRecommender

        return RiverMFRecommender(seed=seed)
    factory = _engine_registry().get(name)
    if factory is not None:
        model: Recommender = factory(seed)
        return model
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(available_models())}")


# --------------------------------------------------------------------------- reporting

_BASELINE: Final = "popularity"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def _table(
    reports: Sequence[EvaluationReport], baseline: str
) -> tuple[str, list[str], list[list[str]]]:
    """A title line, column headers and one row of cells per report."""
    reference = next((report for report in reports if report.model == baseline), None)
    k = reports[0].k if reports else 10
    # Every model sees the same log, so events and eligible events go in the title
    # unless they differ (e.g. reports from different runs).
    same_log = len({(report.events, report.eligible) for report in reports}) <= 1
    title = f"prequential evaluation, k={k}"
    if reports and same_log:
        title += f", {reports[0].events:,} events, {reports[0].eligible:,} eligible"
    if reference is not None:
        title += f"; x = ratio to {baseline}"
    header = ["model"]
    if not same_log:
        header += ["events", "eligible"]
    header += [f"recall@{k}", f"NDCG@{k}", "coverage", "skip AUC", "events/s"]
    if reference is not None:
        header += ["recall x", "NDCG x", "coverage x"]
    rows = []
    for report in reports:
        row = [report.model if report.processes == 1 else f"{report.model} x{report.processes}"]
        if not same_log:
            row += [f"{report.events:,}", f"{report.eligible:,}"]
        row += [
            f"{report.recall_at_k:.4f}",
            f"{report.ndcg_at_k:.4f}",
            f"{report.coverage:.3f}",
            "-" if report.skip_auc is None else f"{report.skip_auc:.3f}",
            f"{report.events_per_second:,.0f}",
        ]
        if reference is not None:
            row += [
                _ratio(report.recall_at_k, reference.recall_at_k),
                _ratio(report.ndcg_at_k, reference.ndcg_at_k),
                _ratio(report.coverage, reference.coverage),
            ]
        rows.append(row)
    return title, header, rows


def format_report(reports: Sequence[EvaluationReport], *, baseline: str = _BASELINE) -> str:
    """Several reports side by side as a plain-text table, with ratios to ``baseline``.

    The ratio columns appear when a report named ``baseline`` is among ``reports``.

    Examples
    --------
    >>> a = EvaluationReport("engine", 10, 100, 80, 20, 0, 50, 20, 0.4, 0.2, 0.30,
    ...                      30, 100, 0.8, 0, 0.01, 10_000.0)
    >>> b = EvaluationReport("popularity", 10, 100, 80, 20, 0, 50, 10, 0.2, 0.1, 0.05,
    ...                      5, 100, None, 0, 0.01, 50_000.0)
    >>> print(format_report([a, b]))
    prequential evaluation, k=10, 100 events, 50 eligible; x = ratio to popularity
    model       recall@10  NDCG@10  coverage  skip AUC  events/s  recall x  NDCG x  coverage x
    engine         0.4000   0.2000     0.300     0.800    10,000     2.00x   2.00x       6.00x
    popularity     0.2000   0.1000     0.050         -    50,000     1.00x   1.00x       1.00x
    """
    title, header, rows = _table(reports, baseline)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [title]
    for cells in [header, *rows]:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]).rstrip())
    return "\n".join(lines)


def report_table(reports: Sequence[EvaluationReport], *, baseline: str = _BASELINE) -> Any:
    """The same table as :func:`format_report`, as a ``rich.table.Table`` to print.

    Examples
    --------
    >>> table = report_table([])
    >>> table.columns[0].header
    'model'
    """
    from rich.table import Table

    title, header, rows = _table(reports, baseline)
    table = Table(title=title)
    for position, name in enumerate(header):
        table.add_column(name, justify="left" if position == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table
