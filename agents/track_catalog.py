"""Keep the engine's catalog in step with the compacted catalog topic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.topics import catalog_topic


@app.agent(catalog_topic)
async def track_catalog(stream: AsyncIterator[Any]) -> None:
    pipeline = worker_pipeline()
    async for event in stream.events():  # type: ignore[attr-defined]
        # (key bytes, raw value bytes or None for a tombstone)
        outcome = pipeline.ingest_catalog(event.value, key=event.key)
        # CatalogItem (upserted) | str (removed item id) | Rejection
        if isinstance(outcome, Rejection):
            await send_dead_letter(event, outcome)
