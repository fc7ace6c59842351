"""Quality of scale-out: engines that share item updates vs one engine that learns everything.

Issue 7 runs several workers, each learning from its own users (users are
partitioned by hash), that share their item side (popularity, co-occurrence,
item factors) through item updates (:mod:`stream.engine.item_updates`). Between
two exchanges each worker misses the others' latest item changes, and each
worker's matrix factorisation takes its gradient steps against item factors
that lag behind the others': the item side is no longer exactly what one
engine would have learned.

This runs the prequential protocol of :mod:`stream.evaluation` (recall@10,
NDCG@10) over one simulated log, for one engine and for ``--workers`` engines
exchanging item updates every ``--every`` events of the stream (each answering
for its own users, as a worker does), and prints the ratio. Updates go through
the wire encoding, as between workers (:class:`stream.parallel_evaluation.SharingReplicas`;
``encore evaluate --processes N`` runs the same computation in N processes).

Usage::

    .venv/bin/python bench/bench_item_sharing.py
    .venv/bin/python bench/bench_item_sharing.py --events 50000 --every 200,2000 --workers 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from stream.engine import Engine, EngineConfig  # noqa: E402
from stream.evaluation import EvaluationReport, evaluate  # noqa: E402
from stream.parallel_evaluation import SharingReplicas  # noqa: E402
from stream.simulator import World, WorldConfig  # noqa: E402

K = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000, help="simulated users (default 2000)")
    parser.add_argument("--items", type=int, default=5000, help="simulated items (default 5000)")
    parser.add_argument(
        "--events", type=int, default=100_000, help="simulated events (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="world and engine seed (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="sharing engines (default 2)")
    parser.add_argument(
        "--every",
        default="500",
        help="events between exchanges, comma-separated for several runs (default 500)",
    )
    args = parser.parse_args(argv)
    try:
        args.every = [int(value) for value in args.every.split(",")]
    except ValueError:
        parser.error(f"--every takes integers, got {args.every!r}")
    if args.workers < 2 or min(args.every) < 1:
        parser.error("--workers must be >= 2 and --every >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    world = World.generate(WorldConfig(n_users=args.users, n_items=args.items, seed=args.seed))
    events = list(world.events(args.events))
    config = EngineConfig(seed=args.seed)
    print(
        f"world: {args.users:,} users, {args.items:,} items, {len(events):,} events; "
        f"prequential recall@{K}"
    )

    def run(name: str, model: Engine | SharingReplicas) -> EvaluationReport:
        started = time.perf_counter()
        report = evaluate(events, model, catalog=world.catalog, k=K, name=name)
        print(
            f"  {name:<32} recall@{K} {report.recall_at_k:.4f}  NDCG@{K} {report.ndcg_at_k:.4f}"
            f"  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        return report

    single = run("one engine", Engine(config))
    for every in args.every:
        shared = SharingReplicas(Engine(config), args.workers, sync_every=every, wire=True)
        report = run(f"{args.workers} engines, exchange every {every:,}", shared)
        ratio = report.recall_at_k / single.recall_at_k if single.recall_at_k else float("nan")
        print(
            f"    recall ratio to one engine {ratio:.3f}; {shared.exchanges:,} exchanges, "
            f"{shared.bytes_sent / max(shared.exchanges * args.workers, 1) / 1e3:,.0f} kB "
            "per update"
        )


if __name__ == "__main__":
    main()
