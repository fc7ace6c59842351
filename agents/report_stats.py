"""``GET /stats/``: the worker's counters as JSON (health checks, the benchmark, the dashboard)."""

from __future__ import annotations

import time
from typing import Any

from agents import partition_progress, worker_pipeline
from stream.app import app
from stream.metrics import lag_summary


@app.page("/stats/")
async def report_stats(web: Any, request: Any) -> Any:
    # pipeline counters + freshness, plus what only Faust knows: consumer offsets
    stats = worker_pipeline().stats()
    stats["consumer_lag"] = lag_summary(partition_progress())
    stats["now"] = time.time()
    return web.json(stats)
