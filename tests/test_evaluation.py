"""Prequential evaluation: eligibility, metrics, purity of rank(), ROC AUC, reporting."""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.baselines import PopularityRecommender, RiverMFRecommender
from stream.evaluation import (
    MODEL_NAMES,
    RECENT_POPULARITY_HALF_LIFE,
    EvaluationReport,
    available_models,
    evaluate,
    format_report,
    make_model,
    report_table,
    roc_auc,
)
from stream.models import CatalogItem, EventType, Interaction

PLAY, SKIP, REPLAY = EventType.PLAY, EventType.SKIP, EventType.REPLAY


def make_log(rows: list[tuple[str, str, EventType]]) -> list[Interaction]:
    """(user, item, type) rows -> interactions one second apart."""
    return [
        Interaction(f"e{n}", user, item, kind, 1_700_000_000.0 + n)
        for n, (user, item, kind) in enumerate(rows)
    ]


class ScriptedRecommender:
    """Always ranks the same list and records every call, to check what evaluate()
    asks and when."""

    def __init__(self, ranking: tuple[str, ...], skip_scores: dict[str, float] | None = None):
        self.ranking = ranking
        self.skip_scores = skip_scores
        self.calls: list[tuple[str, str]] = []

    def upsert_item(self, item: CatalogItem) -> None:
        self.calls.append(("upsert", item.item_id))

    def learn(self, event: Interaction) -> None:
        self.calls.append(("learn", event.event_id))

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
        self.calls.append(("rank", f"{user_id}@{now:.0f}"))
        return list(self.ranking[:k])


class ScriptedSkipRecommender(ScriptedRecommender):
    def predict_skip(self, event: Interaction) -> float:
        self.calls.append(("predict_skip", event.event_id))
        assert self.skip_scores is not None
        return self.skip_scores[event.event_id]


def catalog_item(item_id: str) -> CatalogItem:
    return CatalogItem(item_id, f"title {item_id}", "artist", ("pop",), 180_000, 0.0)


# --------------------------------------------------------------------------- eligibility


def test_only_new_positive_items_of_known_users_are_eligible():
    log = make_log(
        [
            ("u1", "a", PLAY),  # first event of u1: not eligible
            ("u1", "b", SKIP),  # a skip: never eligible
            ("u1", "a", REPLAY),  # a repeat: not eligible
            ("u1", "b", PLAY),  # b was skipped before: not new, not eligible
            ("u1", "c", PLAY),  # eligible
            ("u2", "c", PLAY),  # first event of u2
            ("u2", "d", REPLAY),  # eligible: a replay of an item new to u2 is still new
            ("u2", "c", PLAY),  # repeat
        ]
    )
    model = ScriptedRecommender(("z",))
    report = evaluate(log, model, k=3)
    ranked = [who for call, who in model.calls if call == "rank"]
    assert ranked == [f"u1@{log[4].timestamp:.0f}", f"u2@{log[6].timestamp:.0f}"]
    assert report.eligible == 2
    assert (report.events, report.plays, report.skips, report.replays) == (8, 5, 1, 2)


def test_rank_is_asked_before_learning_the_event_and_predict_skip_before_learn():
    log = make_log([("u1", "a", PLAY), ("u1", "b", PLAY)])
    model = ScriptedSkipRecommender(("b",), skip_scores={"e0": 0.1, "e1": 0.2})
    evaluate(log, model, catalog=[catalog_item("a")])
    assert model.calls == [
        ("upsert", "a"),
        ("predict_skip", "e0"),
        ("learn", "e0"),
        ("rank", f"u1@{log[1].timestamp:.0f}"),
        ("predict_skip", "e1"),
        ("learn", "e1"),
    ]


# --------------------------------------------------------------------------- metrics


def test_recall_and_ndcg_on_a_hand_made_log():
    # The model always ranks x, y, z, w. Eligible targets: y (position 1), w
    # (position 3, outside k=3), x (position 0), q (absent).
    log = make_log(
        [
            ("u1", "a", PLAY),
            ("u1", "y", PLAY),
            ("u2", "a", PLAY),
            ("u2", "w", PLAY),
            ("u3", "a", PLAY),
            ("u3", "x", REPLAY),
            ("u3", "q", PLAY),
        ]
    )
    report = evaluate(log, ScriptedRecommender(("x", "y", "z", "w")), k=3)
    assert report.eligible == 4
    assert report.hits == 2
    assert report.recall_at_k == pytest.approx(2 / 4)
    assert report.ndcg_at_k == pytest.approx((1 / math.log2(3) + 1 / math.log2(2)) / 4)
    assert report.skip_auc is None
    # Coverage: x, y, z were shown (w only beyond k) out of a, y, w, x, q.
    assert report.items_recommended == 3
    assert report.items_known == 5
    assert report.coverage == pytest.approx(3 / 5)


def test_coverage_uses_the_catalog_when_given():
    log = make_log([("u1", "a", PLAY), ("u1", "b", PLAY)])
    catalog = [catalog_item(item) for item in "abcdefgh"]
    report = evaluate(log, ScriptedRecommender(("b", "c")), catalog=catalog, k=10)
    assert report.items_known == 8
    assert report.coverage == pytest.approx(2 / 8)


def test_rankings_that_break_the_contract_are_counted_and_cut_to_k():
    class Greedy(ScriptedRecommender):
        def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
            return ["a", "b", "b", "c"]  # "a" already played by u1, "b" twice, one too many

    log = make_log([("u1", "a", PLAY), ("u1", "c", PLAY)])
    report = evaluate(log, Greedy(()), k=3)
    assert report.invalid_recommendations == 1 + 1 + 1
    assert report.hits == 0  # "c" was only in the fourth slot


def test_skip_auc_comes_from_predict_skip_over_all_events():
    log = make_log([("u1", "a", PLAY), ("u1", "b", SKIP), ("u2", "c", SKIP), ("u2", "d", PLAY)])
    scores = {"e0": 0.2, "e1": 0.9, "e2": 0.3, "e3": 0.3}
    report = evaluate(log, ScriptedSkipRecommender((), skip_scores=scores))
    # Skips 0.9, 0.3 vs plays 0.2, 0.3: pairs won 1+1+1, tied 1 -> 3.5 / 4.
    assert report.skip_auc == pytest.approx(0.875)


def test_limit_stops_early_and_order_is_enforced():
    log = make_log([("u1", "a", PLAY), ("u1", "b", PLAY), ("u1", "c", PLAY)])
    assert evaluate(log, ScriptedRecommender(()), limit=2).events == 2
    shuffled = [log[1], log[0], log[2]]
    with pytest.raises(ValueError, match="time order"):
        evaluate(shuffled, ScriptedRecommender(()))


def test_generators_and_progress_bar(capsys):
    log = make_log([(f"u{n % 7}", f"i{n % 13}", PLAY) for n in range(5000)])
    report = evaluate(iter(log), PopularityRecommender(), progress=True, name="popularity")
    assert report.events == 5000
    assert report.model == "popularity"
    assert capsys.readouterr().out == ""  # the bar goes to stderr, stdout stays clean for JSON


# --------------------------------------------------------------------------- purity


def _varied_log(n_events: int, seed: int) -> list[Interaction]:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, 61) ** 0.8
    popularity /= popularity.sum()
    kinds = (PLAY, SKIP, REPLAY)
    return make_log(
        [
            (f"u{rng.integers(15)}", f"i{rng.choice(60, p=popularity)}", kinds[kind])
            for kind in rng.choice(3, n_events, p=[0.6, 0.3, 0.1])
        ]
    )


# Every registered model, the engine included: evaluation is only valid if rank()
# and predict_skip() are pure queries.
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rank_does_not_change_state(name):
    log = _varied_log(600, seed=1)
    evaluated, learned_only = make_model(name, seed=0), make_model(name, seed=0)
    evaluate(log, evaluated)
    for event in log:
        learned_only.learn(event)
    probe = Interaction("p", "u3", "i5", PLAY, log[-1].timestamp)
    users = [f"u{n}" for n in range(15)] + ["stranger"]
    now = log[-1].timestamp + 60.0
    for user in users:
        assert evaluated.rank(user, 10, now=now) == learned_only.rank(user, 10, now=now)
    assert evaluated.predict_skip(probe) == learned_only.predict_skip(probe)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_evaluating_copies_gives_the_same_report(name):
    log = _varied_log(600, seed=2)
    warm = make_model(name, seed=0)
    evaluate(log[:300], warm)
    first = evaluate(log[300:], copy.deepcopy(warm))
    second = evaluate(log[300:], copy.deepcopy(warm))
    timing = {"seconds": 0.0, "events_per_second": 0.0}
    assert replace(first, **timing) == replace(second, **timing)
    assert first.eligible > 50 and first.skip_auc is not None


# --------------------------------------------------------------------------- ROC AUC


def test_roc_auc_hand_computed():
    # Positives 0.9, 0.6, 0.4; negatives 0.6, 0.3. Pairs: 0.9 beats both (2), 0.6
    # ties 0.6 and beats 0.3 (1.5), 0.4 loses to 0.6 and beats 0.3 (1) -> 4.5 / 6.
    assert roc_auc([0.9, 0.6, 0.4, 0.6, 0.3], [1, 1, 1, 0, 0]) == pytest.approx(0.75)
    assert roc_auc([0.1, 0.2], [True, False]) == 0.0
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5).map(lambda v: v / 5), st.booleans()), min_size=2, max_size=40
    )
)
def test_roc_auc_matches_counting_every_pair(pairs):
    scores = [score for score, _ in pairs]
    labels = [label for _, label in pairs]
    positives = [s for s, label in pairs if label]
    negatives = [s for s, label in pairs if not label]
    if not positives or not negatives:
        assert math.isnan(roc_auc(scores, labels))
        return
    wins = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives)
    )
    assert roc_auc(scores, labels) == pytest.approx(wins / (len(positives) * len(negatives)))


# --------------------------------------------------------------------------- registry, report


def test_make_model_builds_fresh_baselines():
    popularity = make_model("popularity", seed=4)
    assert isinstance(popularity, PopularityRecommender)
    assert popularity is not make_model("popularity", seed=4)
    river = make_model("river-mf", seed=4)
    assert isinstance(river, RiverMFRecommender) and river.seed == 4
    assert make_model("recent-popularity").half_life == RECENT_POPULARITY_HALF_LIFE
    assert set(MODEL_NAMES) == {"engine", "popularity", "recent-popularity", "river-mf"}
    with pytest.raises(ValueError, match="unknown model"):
        make_model("random")


def test_make_model_reaches_the_engine_ablations():
    from stream.engine.registry import MODEL_FACTORIES

    extra = available_models()[len(MODEL_NAMES) :]
    assert extra and set(extra) <= set(MODEL_FACTORIES)
    model = make_model(extra[0], seed=5)
    assert type(model) is type(MODEL_FACTORIES[extra[0]](5))
    log = make_log([("u1", "a", PLAY), ("u2", "b", PLAY), ("u1", "b", PLAY)])
    assert evaluate(log, model).eligible == 1


def _report(model: str, recall: float, auc: float | None = None) -> EvaluationReport:
    return EvaluationReport(
        model, 10, 1000, 700, 250, 50, 400, int(recall * 400), recall, recall / 2,
        0.1, 50, 500, auc, 0, 0.1, 10_000.0,
    )  # fmt: skip


def test_format_report_shows_ratios_to_popularity():
    text = format_report([_report("engine", 0.30, 0.8), _report("popularity", 0.12)])
    engine_line = next(line for line in text.splitlines() if line.startswith("engine"))
    assert "0.3000" in engine_line and "2.50x" in engine_line and "0.800" in engine_line
    assert "ratio to popularity" in text.splitlines()[0]
    without_baseline = format_report([_report("engine", 0.30)])
    assert "x" not in without_baseline.splitlines()[1].split()  # no ratio columns
    assert [column.header for column in report_table([_report("engine", 0.3)]).columns][:2] == [
        "model",
        "recall@10",
    ]


def test_report_to_dict_is_json_ready():
    report = evaluate(make_log([("u1", "a", PLAY), ("u1", "b", PLAY)]), PopularityRecommender())
    decoded = json.loads(json.dumps(report.to_dict()))
    assert decoded["events"] == 2 and decoded["eligible"] == 1
    assert decoded["skip_auc"] is None  # one class only: no AUC


# --------------------------------------------------------------------------- the bench script


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_runs_on_a_small_world_and_writes_figures(tmp_path, capsys):
    bench = _bench_module()
    output = tmp_path / "quality.json"
    argv = ["--users", "60", "--items", "300", "--events", "3000", "--no-progress"]
    assert bench.main([*argv, "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    names = [report["model"] for report in figures["reports"]]
    assert names == [*MODEL_NAMES, "oracle", "engine"]
    assert [report["processes"] for report in figures["reports"]] == [1] * 5 + [2]
    assert figures["log"]["events"] == 3000
    by_name = {report["model"]: report for report in figures["reports"][:5]}
    # Same log for every model: same eligible events; the oracle knows the truth.
    assert len({report["eligible"] for report in figures["reports"]}) == 1
    assert by_name["oracle"]["recall_at_k"] > by_name["popularity"]["recall_at_k"]
    verdicts = {check["verdict"] for check in figures["acceptance"]}
    # Quality for the engine in one and in two processes, then speed (of the split run).
    assert verdicts <= {"PASS", "FAIL"} and len(figures["acceptance"]) == 7
    targets = [check["target"] for check in figures["acceptance"]]
    assert targets[3] == "engine in 2 processes: recall@10 >= 2x popularity's"
    assert targets[6].startswith("engine in 2 processes (one process: ")
    assert figures["acceptance"][6]["measured"] == figures["reports"][5]["events_per_second"]
    printed = capsys.readouterr().out
    assert "engine: recall@10 >= 2x popularity's" in printed
    assert "engine x2" in printed


def test_bench_reads_an_outside_csv_log(tmp_path):
    bench = _bench_module()
    rows = ["userId,movieId,rating,timestamp"]
    rows += [f"{n % 9},{(n * 7) % 31},{1 + n % 5},{1_000_000 + (n * 37) % 500}" for n in range(400)]
    log = tmp_path / "ratings.csv"
    log.write_text("\n".join(rows) + "\n")
    output = tmp_path / "quality.json"
    argv = ["--log", str(log), "--models", "popularity,river-mf", "--no-progress"]
    assert bench.main([*argv, "--output", str(output)]) == 0
    figures = json.loads(output.read_text())
    assert figures["log"]["events"] == 400  # unsorted input is sorted, nothing dropped
    assert [check["verdict"] for check in figures["acceptance"]] == ["SKIP"] * 4
    with pytest.raises(SystemExit):
        bench.parse_args(["--log", str(log), "--models", "oracle"])
