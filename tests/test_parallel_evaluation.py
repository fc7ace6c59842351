"""Evaluation split by user over processes that exchange item updates (stream.parallel_evaluation).

The reference is :class:`SharingReplicas`: the same replicas and exchanges, in one
process. Every count of a parallel run must equal its count exactly.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os

import pytest

from stream.engine import Engine, EngineConfig
from stream.engine.baselines import PopularityRecommender
from stream.evaluation import EvaluationReport, Tally, evaluate
from stream.models import EventType, Interaction
from stream.parallel_evaluation import (
    SharingReplicas,
    can_share_items,
    evaluate_in_processes,
    process_of,
)
from stream.simulator import World, WorldConfig

TIMING = {"seconds", "events_per_second", "processes", "sync_every"}


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(n_users=150, n_items=600, seed=4))


@pytest.fixture(scope="module")
def log(world: World) -> list[Interaction]:
    return list(world.events(6_000))


def counts(report: EvaluationReport) -> dict[str, object]:
    """Everything in a report but how long it took and how it was run."""
    return {name: value for name, value in dataclasses.asdict(report).items() if name not in TIMING}


def assert_same_counts(report: EvaluationReport, expected: EvaluationReport) -> None:
    """Equal counts; NDCG to 1e-12 relative: each process sums its gains and the sums are
    then added, so its last bit depends on the order of the additions."""
    found, wanted = counts(report), counts(expected)
    assert found.pop("ndcg_at_k") == pytest.approx(wanted.pop("ndcg_at_k"), rel=1e-12, abs=0)
    assert found == wanted


def engine() -> Engine:
    return Engine(EngineConfig(seed=3))


def reference(world: World, log: list[Interaction], processes: int, sync_every: int):
    replicas = SharingReplicas(engine(), processes, sync_every=sync_every)
    return evaluate(log, replicas, catalog=list(world.catalog), name="engine")


@pytest.mark.parametrize("processes, sync_every", [(2, 500), (3, 1_300)])
def test_processes_count_exactly_what_replicas_in_one_process_count(
    world, log, processes, sync_every
):
    report = evaluate_in_processes(
        log,
        engine(),
        processes=processes,
        sync_every=sync_every,
        catalog=list(world.catalog),
        name="engine",
    )
    expected = reference(world, log, processes, sync_every)
    assert_same_counts(report, expected)
    assert report.eligible > 500 and report.hits > 0
    assert report.skip_auc is not None and 0.5 < report.skip_auc < 1.0
    assert (report.processes, report.sync_every) == (processes, sync_every)
    assert report.events == len(log)


def test_events_from_a_generator_travel_through_the_pipes_with_the_same_result(world, log):
    from_list = evaluate_in_processes(
        log, engine(), processes=2, sync_every=700, catalog=list(world.catalog)
    )
    from_generator = evaluate_in_processes(
        (event for event in log), engine(), processes=2, sync_every=700, catalog=world.catalog
    )
    assert_same_counts(from_generator, from_list)


def test_spawned_processes_get_a_pickled_copy_and_count_the_same(world, log):
    short = log[:2_000]
    forked = evaluate_in_processes(
        short, engine(), processes=2, sync_every=400, catalog=list(world.catalog)
    )
    spawned = evaluate_in_processes(
        short,
        engine(),
        processes=2,
        sync_every=400,
        catalog=list(world.catalog),
        start_method="spawn",
    )
    assert_same_counts(spawned, forked)


def test_sharing_changes_the_figures_only_a_little_and_one_process_is_evaluate(world, log):
    alone = evaluate(log, engine(), catalog=list(world.catalog))
    one = evaluate_in_processes(log, engine(), processes=1, catalog=list(world.catalog))
    assert counts(one) == counts(alone) and one.processes == 1 and one.sync_every is None
    two = evaluate_in_processes(
        log, engine(), processes=2, sync_every=200, catalog=list(world.catalog)
    )
    # The same events are eligible (eligibility is the log's); the hits differ by the
    # item state a process has not seen yet, and by skip models that saw half the users.
    assert two.eligible == alone.eligible
    assert two.hits != alone.hits or two.skip_auc != alone.skip_auc
    assert abs(two.recall_at_k - alone.recall_at_k) < 0.25 * alone.recall_at_k


def test_the_model_given_is_not_trained_and_runs_are_reproducible(world, log):
    model = engine()
    first = evaluate_in_processes(log[:3_000], model, processes=2, sync_every=300)
    assert model.n_events == 0 and not model.users
    second = evaluate_in_processes(log[:3_000], engine(), processes=2, sync_every=300)
    assert_same_counts(first, second)


def test_limit_stops_after_that_many_events_in_all(log):
    report = evaluate_in_processes(log, engine(), processes=2, sync_every=1_000, limit=2_345)
    assert report.events == 2_345
    assert report.plays + report.skips + report.replays == 2_345


@pytest.mark.parametrize("as_generator", [False, True])
def test_events_out_of_time_order_are_refused_and_no_process_is_left(log, as_generator):
    broken = [*log[:1_500], dataclasses.replace(log[1_500], timestamp=log[0].timestamp - 1)]
    events = (event for event in broken) if as_generator else broken
    with pytest.raises(ValueError, match="time order"):
        evaluate_in_processes(events, engine(), processes=2, sync_every=400)
    assert multiprocessing.active_children() == []


def test_a_model_that_cannot_share_items_is_refused_with_its_name():
    assert not can_share_items(PopularityRecommender())
    assert can_share_items(engine())
    with pytest.raises(ValueError, match="popularity cannot share item updates"):
        evaluate_in_processes([], PopularityRecommender(), processes=2, name="popularity")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"processes": 0}, "processes must be at least 1"),
        ({"sync_every": 0}, "sync_every must be at least 1"),
        ({"k": 0}, "k must be at least 1"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        evaluate_in_processes([], engine(), **{"processes": 2, **settings})


class FailingEngine(Engine):
    """Fails (or dies) on one event, to check how a broken process is reported."""

    def __init__(self, fail_on: str, how: str) -> None:
        super().__init__(EngineConfig(seed=3))
        self.fail_on = fail_on
        self.how = how

    def learn(self, event: Interaction, *, item_side: bool = True) -> None:
        if event.event_id == self.fail_on:
            if self.how == "die":
                os._exit(7)
            raise KeyError(f"no such thing as {event.item_id}")
        super().learn(event, item_side=item_side)


def test_an_error_in_a_process_is_raised_with_its_traceback(log):
    model = FailingEngine(fail_on=log[2_222].event_id, how="raise")
    with pytest.raises(RuntimeError, match="evaluation process [12] of 2 failed") as raised:
        evaluate_in_processes(log, model, processes=2, sync_every=500)
    assert f"KeyError: 'no such thing as {log[2_222].item_id}'" in str(raised.value)
    assert multiprocessing.active_children() == []


def test_a_process_that_dies_is_reported_with_its_exit_code(log):
    model = FailingEngine(fail_on=log[1_111].event_id, how="die")
    with pytest.raises(RuntimeError, match="ended unexpectedly \\(exit code 7\\)"):
        evaluate_in_processes(log, model, processes=2, sync_every=500)
    assert multiprocessing.active_children() == []


def test_users_go_to_one_process_each_by_a_stable_hash(log):
    users = {event.user_id for event in log}
    shares = [sum(process_of(user, 3) == index for user in users) for index in range(3)]
    assert sum(shares) == len(users) and min(shares) > len(users) / 6
    # CRC-32, not Python's salted hash: the same in every process and every run.
    assert [process_of(user, 2) for user in ("ann", "bob", "cat", "dan")] == [1, 0, 0, 1]


def test_tallies_of_disjoint_users_add_up_to_the_tally_of_all():
    def play(n: int, user: str, item: str, kind: EventType = EventType.PLAY) -> Interaction:
        return Interaction(f"e{n}", user, item, kind, float(n))

    log = [
        play(0, "ann", "a"),
        play(1, "bob", "a"),
        play(2, "ann", "b"),
        play(3, "bob", "c", EventType.SKIP),
        play(4, "bob", "b"),
        play(5, "ann", "a", EventType.REPLAY),
    ]
    whole = Tally(k=2)
    whole.consume(log, PopularityRecommender())
    # Popularity learns from everyone, so each half gets a model that saw the whole log
    # up to then: the halves' counts are the whole's.
    halves = []
    for user in ("ann", "bob"):
        tally = Tally(k=2)
        model = PopularityRecommender()
        for event in log:
            if event.user_id == user:
                tally.consume([event], model)
            else:
                model.learn(event)
        halves.append(tally.without_users())
    merged = Tally(k=2)
    for half in halves:
        merged.merge(half)
    assert merged.report("p", 1.0) == whole.report("p", 1.0)
    assert merged.seen_by_user == {}
    with pytest.raises(ValueError, match="k=3"):
        merged.merge(Tally(k=3))
