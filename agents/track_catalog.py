"""Keep the engine's catalog in step with the compacted catalog topic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import TP

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.topics import catalog_topic


@app.batch_agent(catalog_topic)
async def track_catalog(tp: TP, records: Sequence[Any]) -> None:
    pipeline = worker_pipeline()
    for record in records:
        # (key bytes, raw value bytes or None for a tombstone)
        outcome = pipeline.ingest_catalog(record.value, key=record.key)
        # CatalogItem (upserted) | str (removed item id) | Rejection
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)
