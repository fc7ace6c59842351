"""``GET /stats/``: the worker's counters as JSON (health checks, the benchmark, the demo).

``GET /stats/user-counts/``: every user's exact play/skip/replay counts in this
worker's state (for operators checking recovery, and the crash tests).
"""

from __future__ import annotations

from typing import Any

from agents import worker_pipeline
from stream.app import app


@app.page("/stats/")
async def report_stats(web: Any, request: Any) -> Any:
    stats = worker_pipeline().stats()
    if app.checkpointer is not None:
        stats.update(app.checkpointer.stats())
    return web.json(stats)


@app.page("/stats/user-counts/")
async def report_user_counts(web: Any, request: Any) -> Any:
    engine = worker_pipeline().engine
    return web.json({user_id: engine.user_counts(user_id) for user_id in engine.users})
