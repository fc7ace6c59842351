"""``GET /stats/``: the worker's counters as JSON (health checks, the benchmark, the dashboard).

``GET /stats/user-counts/``: every user's exact play/skip/replay counts in this
worker's state (for operators checking recovery, and the crash tests).
"""

from __future__ import annotations

import time
from typing import Any

from agents import partition_progress, worker_pipeline
from agents.trim_memory import worker_freezer, worker_trimmer
from stream.app import app
from stream.metrics import lag_summary


@app.page("/stats/")
async def report_stats(web: Any, request: Any) -> Any:
    # pipeline counters + freshness, plus what only Faust knows: consumer offsets
    stats = worker_pipeline().stats()
    stats["consumer_lag"] = lag_summary(partition_progress())
    stats["now"] = time.time()
    if app.checkpointer is not None:
        stats.update(app.checkpointer.stats())
    stats.update(worker_trimmer().stats())
    stats.update(worker_freezer().stats())
    return web.json(stats)


@app.page("/stats/user-counts/")
async def report_user_counts(web: Any, request: Any) -> Any:
    engine = worker_pipeline().engine
    return web.json({user_id: engine.user_counts(user_id) for user_id in engine.users})
