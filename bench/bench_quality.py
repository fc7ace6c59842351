"""Quality benchmark: prequential recall@10, NDCG@10, coverage and skip AUC.

Runs :func:`stream.evaluation.evaluate` for the engine and the baselines over one
time-ordered log -- the default simulator world (2,000 users x 5,000 items,
seed 0) or an outside log given with ``--log`` -- prints a table, checks the
acceptance targets (PASS/FAIL, never an assertion) and writes the figures to
``bench/results/quality.json`` (git-ignored).

Why 200,000 events by default: the simulated listeners then cover about eleven
days, the median user has about 70 events (a history worth personalising), and
there are close to 50,000 eligible (new-item) events, so a recall near 0.06
has a standard error near 0.001 -- small enough to tell a 2x ratio apart --
while the whole run stays well under a minute on two shared cores. Generating
the log takes a few seconds, less than reading a cached copy would, so nothing
is cached.

On the simulator an ``oracle`` row ranks by the world's true pick weights
(:meth:`stream.simulator.World.oracle_scores`): the ceiling for recall.

The engine is evaluated twice: in one process, and split by user over
``--processes`` processes that exchange item updates every ``--sync-every``
events, as that many workers would run it
(:func:`stream.parallel_evaluation.evaluate_in_processes`). The quality targets
are checked on both; the speed target on the split run, with the one-process
figure beside it.

Usage::

    .venv/bin/python bench/bench_quality.py
    .venv/bin/python bench/bench_quality.py --events 50000 --models engine,popularity
    .venv/bin/python bench/bench_quality.py --log ratings.csv   # user,item,timestamp[,rating]
    .venv/bin/python bench/bench_quality.py --models engine --processes 1   # one process only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from any directory

import numpy as np  # noqa: E402

from stream.evaluation import (  # noqa: E402
    MODEL_NAMES,
    EvaluationReport,
    Recommender,
    available_models,
    evaluate,
    format_report,
    make_model,
)
from stream.models import CatalogItem, Interaction  # noqa: E402
from stream.parallel_evaluation import DEFAULT_SYNC_EVERY, evaluate_in_processes  # noqa: E402

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "quality.json"
ORACLE = "oracle"
K = 10

# Acceptance targets of the engine (checked and printed, not asserted).
MIN_RECALL_RATIO_TO_POPULARITY = 2.0
MIN_SKIP_AUC = 0.75
MIN_EVENTS_PER_SECOND = 20_000.0


class OracleRecommender:
    """Ranks by the simulator's ground truth; only meaningful on a simulated log.

    It learns nothing but which items each user met (to leave them out).
    """

    def __init__(self, world: Any) -> None:
        self.world = world
        self._item_ids: list[str] = list(world.item_ids)
        self._row_of = {item_id: row for row, item_id in enumerate(self._item_ids)}
        self._seen: dict[str, set[int]] = {}

    def upsert_item(self, item: CatalogItem) -> None:
        """The world already knows its catalog."""

    def learn(self, event: Interaction) -> None:
        self._seen.setdefault(event.user_id, set()).add(self._row_of[event.item_id])

    def rank(self, user_id: str, k: int, *, now: float) -> list[str]:
        scores = self.world.oracle_scores(user_id, now).astype(float)
        seen = self._seen.get(user_id, set())
        scores[np.fromiter(seen, dtype=np.intp, count=len(seen))] = -np.inf
        top = np.argpartition(-scores, k)[:k] if k < scores.shape[0] else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [self._item_ids[row] for row in top if scores[row] > -np.inf]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000, help="simulated users (default 2000)")
    parser.add_argument("--items", type=int, default=5000, help="simulated items (default 5000)")
    parser.add_argument(
        "--events", type=int, default=200_000, help="simulated events (default 200000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="world and model seed (default 0)")
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated, from {', '.join((*MODEL_NAMES, ORACLE))} or an engine "
        f"ablation ({', '.join(available_models()[len(MODEL_NAMES) :]) or 'none'}); "
        "default: the first five (oracle only on the simulator)",
    )
    parser.add_argument(
        "--log", type=Path, default=None, help="an outside log (.csv or .jsonl) instead"
    )
    parser.add_argument("--catalog", type=Path, default=None, help="catalog file for --log")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N events only")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"JSON figures (default {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="also evaluate the engine split over N processes (default 2; 1 = not)",
    )
    parser.add_argument(
        "--sync-every",
        type=int,
        default=DEFAULT_SYNC_EVERY,
        help="events between item-update exchanges of the split run "
        f"(default {DEFAULT_SYNC_EVERY})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.sync_every < 1:
        parser.error("--processes and --sync-every must be at least 1")
    if args.catalog is not None and args.log is None:
        parser.error("--catalog only goes with --log")
    names = args.models.split(",") if args.models else [*MODEL_NAMES]
    if args.models is None and args.log is None:
        names.append(ORACLE)
    unknown = [name for name in names if name not in (*available_models(), ORACLE)]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}")
    if ORACLE in names and args.log is not None:
        parser.error("the oracle needs the simulator: drop --log or the oracle")
    args.models = names
    return args


def load_log(args: argparse.Namespace) -> tuple[list[Interaction], list[CatalogItem] | None, Any]:
    """Events in time order, the catalog if known, and the simulated world (or ``None``)."""
    if args.log is not None:
        from stream.eventlog import read_catalog, read_events, sorted_by_time

        events = list(sorted_by_time(read_events(args.log)))
        catalog = list(read_catalog(args.catalog)) if args.catalog is not None else None
        return events, catalog, None

    from stream.simulator import World, WorldConfig

    world = World.generate(WorldConfig(n_users=args.users, n_items=args.items, seed=args.seed))
    count = args.events if args.limit is None else min(args.events, args.limit)
    events = list(world.events(count))
    return events, list(world.catalog), world


def log_summary(events: Sequence[Interaction]) -> dict[str, Any]:
    users = {event.user_id for event in events}
    days = (events[-1].timestamp - events[0].timestamp) / 86_400 if events else 0.0
    return {
        "events": len(events),
        "users": len(users),
        "items_in_log": len({event.item_id for event in events}),
        "days": round(days, 2),
    }


def acceptance(
    reports: dict[str, EvaluationReport], split: EvaluationReport | None = None
) -> list[dict[str, Any]]:
    """Each target with the measured figure and PASS, FAIL or SKIP (a model did not run).

    ``split`` is the engine's run over several processes: its quality is checked
    like the one-process engine's, and the speed target is checked on it.
    """
    popularity = reports.get("popularity")
    river = reports.get("river-mf")
    checks: list[dict[str, Any]] = []

    def check(target: str, measured: float | None, passed: bool | None) -> None:
        verdict = "SKIP" if passed is None else "PASS" if passed else "FAIL"
        checks.append({"target": target, "measured": measured, "verdict": verdict})

    runs = [("engine", reports.get("engine"))]
    if split is not None:
        runs.append((f"engine in {split.processes} processes", split))
    for label, engine in runs:
        ratio = (
            engine.recall_at_k / popularity.recall_at_k
            if engine and popularity and popularity.recall_at_k
            else None
        )
        check(
            f"{label}: recall@{K} >= {MIN_RECALL_RATIO_TO_POPULARITY:g}x popularity's",
            ratio,
            None if ratio is None else ratio >= MIN_RECALL_RATIO_TO_POPULARITY,
        )
        check(
            f"{label}: recall@{K} > river-mf's",
            None if not (engine and river) else engine.recall_at_k - river.recall_at_k,
            None if not (engine and river) else engine.recall_at_k > river.recall_at_k,
        )
        auc = engine.skip_auc if engine else None
        passed = None if auc is None else auc >= MIN_SKIP_AUC
        check(f"{label}: skip AUC >= {MIN_SKIP_AUC}", auc, passed)
    one = reports.get("engine")
    timed = split if split is not None else one
    label = "engine" if split is None else f"engine in {split.processes} processes"
    if split is not None and one is not None:
        label += f" (one process: {one.events_per_second:,.0f})"
    speed = timed.events_per_second if timed else None
    check(
        f"{label}: events/s >= {MIN_EVENTS_PER_SECOND:,.0f}",
        speed,
        None if speed is None else speed >= MIN_EVENTS_PER_SECOND,
    )
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from rich.console import Console

    console = Console()
    started = time.perf_counter()
    events, catalog, world = load_log(args)
    if args.limit is not None:
        events = events[: args.limit]
    summary = log_summary(events)
    source = str(args.log) if args.log else f"simulator {args.users}x{args.items} seed {args.seed}"
    console.print(
        f"log: {source}: {summary['events']:,} events, {summary['users']:,} users, "
        f"{summary['items_in_log']:,} items over {summary['days']} days "
        f"(loaded in {time.perf_counter() - started:.1f} s)"
    )

    reports: dict[str, EvaluationReport] = {}
    for name in args.models:
        model: Recommender = (
            OracleRecommender(world) if name == ORACLE else make_model(name, args.seed)
        )
        reports[name] = evaluate(
            events, model, catalog=catalog, k=K, progress=not args.no_progress, name=name
        )
        console.print(
            f"  {name}: recall@{K} {reports[name].recall_at_k:.4f} in {reports[name].seconds:.1f} s"
        )

    split = None
    if args.processes > 1 and "engine" in reports:
        split = evaluate_in_processes(
            events,
            make_model("engine", args.seed),
            processes=args.processes,
            sync_every=args.sync_every,
            catalog=catalog,
            k=K,
            progress=not args.no_progress,
            name="engine",
        )
        console.print(
            f"  engine in {args.processes} processes (item updates every {args.sync_every:,} "
            f"events): recall@{K} {split.recall_at_k:.4f} in {split.seconds:.1f} s"
        )
    all_reports = [*reports.values(), *([split] if split else [])]
    print(format_report(all_reports))  # plain text: stays whole in logs and pipes
    checks = acceptance(reports, split)
    for item in checks:
        measured = item["measured"]
        shown = "-" if measured is None else f"{measured:,.4g}"
        colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}[item["verdict"]]
        console.print(f"[{colour}]{item['verdict']}[/]  {item['target']}  (measured {shown})")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "log": {"source": source, **summary},
        "settings": {
            "users": args.users,
            "items": args.items,
            "events": args.events,
            "seed": args.seed,
            "limit": args.limit,
            "k": K,
            "models": args.models,
            "processes": args.processes,
            "sync_every": args.sync_every,
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "reports": [report.to_dict() for report in all_reports],
        "acceptance": checks,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    console.print(f"figures written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
