"""``GET /health`` (broker and assignment) and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

from typing import Any

from agents import assigned_partitions, worker_metrics, worker_pipeline
from stream.app import app
from stream.serving import health_document, probe_broker
from stream.settings import get_settings
from stream.topics import EVENT_TYPE_TOPICS


@app.page("/health")
async def report_health(web: Any, request: Any) -> Any:
    broker = await probe_broker(get_settings().bootstrap_servers)
    status, body = health_document(
        broker=broker,
        assigned=assigned_partitions(),
        event_topics=[topic.get_topic_name() for topic in EVENT_TYPE_TOPICS.values()],
        pipeline=worker_pipeline(),
    )
    return web.json(body, status=status)


@app.page("/metrics")
async def report_metrics(web: Any, request: Any) -> Any:
    metrics = worker_metrics()
    # aiohttp refuses a charset in content_type=, so the full header is set directly
    return web.bytes(metrics.render(), headers={"Content-Type": metrics.content_type})
