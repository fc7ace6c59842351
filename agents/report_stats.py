"""``GET /stats``: the worker's counters as JSON (health checks, the benchmark, the demo)."""

from __future__ import annotations

from typing import Any

from agents import worker_pipeline
from stream.app import app


@app.page("/stats/")
async def report_stats(web: Any, request: Any) -> Any:
    return web.json(worker_pipeline().stats())
