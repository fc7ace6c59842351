"""Memory of Wrapped's per-user counters after months of daily listening.

The throughput benchmark's per-user memory comes from users with a few events;
Wrapped keeps, per user and month, up to ``ENCORE_WRAPPED_MAX_ENTRIES`` items,
artists and genres for ``ENCORE_WRAPPED_MONTHS`` months, which only fill up over
months. This feeds :class:`stream.wrapped.ListeningHistory` (defaults: 13 months,
200 entries) the listening of ``--users`` synthetic listeners over ``--days``
days, ``--events-per-day`` each, drawn (Zipf-like) from a repertoire of
``--artists`` artists x ``--items-per-artist`` items, and measures the Python
allocations it holds (``tracemalloc``) per user.

Run: ``.venv/bin/python bench/bench_wrapped_memory.py`` (a few minutes; add
``--artists 200 --items-per-artist 10`` for a listener with a wider taste).
Figures, not assertions.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.models import CatalogItem, EventType, Interaction  # noqa: E402
from stream.wrapped import ListeningHistory  # noqa: E402

DAY = 86_400.0
GENRES = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--days", type=int, default=395, help="13 months: every month kept")
    parser.add_argument("--events-per-day", type=int, default=60)
    parser.add_argument("--artists", type=int, default=60, help="artists in a listener's year")
    parser.add_argument("--items-per-artist", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    n_artists = 50 * args.artists  # the catalog's artists; each listener knows a few
    per_artist = args.items_per_artist
    repertoire_size = args.artists * per_artist
    weights = 1.0 / np.arange(1, repertoire_size + 1) ** 0.8
    weights /= weights.sum()
    history = ListeningHistory()
    start = time.time() - args.days * DAY
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for user in range(args.users):
        artists = rng.choice(n_artists, size=args.artists, replace=False)
        repertoire = (artists[:, None] * per_artist + np.arange(per_artist)).ravel()
        for day in range(args.days):
            for k, row in enumerate(rng.choice(repertoire, size=args.events_per_day, p=weights)):
                artist = int(row) // per_artist
                info = CatalogItem(
                    f"t-{row}", f"Title {row}", f"artist-{artist}", (f"genre-{artist % GENRES}",),
                    210_000, 0.0,
                )  # fmt: skip
                skip = k % 4 == 3
                history.learn(
                    Interaction(
                        f"e-{user}-{day}-{k}",
                        f"user-{user}",
                        info.item_id,
                        EventType.SKIP if skip else EventType.PLAY,
                        start + day * DAY + k * 210.0,
                        ms_played=30_000 if skip else 210_000,
                    ),
                    info,
                )
    after = tracemalloc.take_snapshot()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    latest = history.export_users(["user-0"])["user-0"]
    latest_month = latest[max(latest)]
    events = args.users * args.days * args.events_per_day
    print(
        f"{args.users} listeners x {args.days} days x {args.events_per_day} events "
        f"({events:,} events); repertoire {args.artists} artists x {per_artist} items"
    )
    print(
        f"months kept {len(latest)}; latest month: {len(latest_month['items'])} items, "
        f"{len(latest_month['artists'])} artists, {len(latest_month['genres'])} genres"
    )
    print(f"Wrapped counters: {held / args.users / 1024:,.0f} KiB per user")


if __name__ == "__main__":
    main()
