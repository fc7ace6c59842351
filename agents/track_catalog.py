"""Keep the engine's catalog in step with the compacted catalog topic."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from faust.types import TP

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.catalog_progress import CatalogProgress
from stream.contracts import Rejection
from stream.topics import catalog_topic

logger = logging.getLogger(__name__)

#: How far this process has read each catalog partition (for ENCORE_UNKNOWN_ITEMS=reject).
catalog_progress = CatalogProgress()


@app.batch_agent(catalog_topic)
async def track_catalog(tp: TP, records: Sequence[Any]) -> None:
    pipeline = worker_pipeline()
    for record in records:
        # (key bytes, raw value bytes or None for a tombstone)
        outcome = pipeline.ingest_catalog(record.value, key=record.key)
        # CatalogItem (upserted) | str (removed item id) | Rejection
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)
        catalog_progress.read(tp.partition, record.offset)


@app.timer(interval=1.0, name="watch_catalog_progress")
async def watch_catalog_progress() -> None:
    """With unknown items rejected: tell the pipeline once the whole catalog has been read."""
    pipeline = worker_pipeline()
    if pipeline.unknown_items != "reject" or pipeline.catalog_ready:
        return
    name = catalog_topic.get_topic_name()
    try:
        n_partitions = app.consumer.topic_partitions(name)
        owned = [tp for tp in app.consumer.assignment() if tp.topic == name]
        if not n_partitions or len(owned) < n_partitions:
            return  # not assigned yet, or another worker reads part of the catalog
        earliest = await app.consumer.earliest_offsets(*owned)
        ends = await app.consumer.highwaters(*owned)
    except Exception as error:  # noqa: BLE001 - e.g. mid-rebalance: try again next tick
        logger.warning("catalog progress unknown (%r); will retry", error)
        return
    if catalog_progress.complete(
        n_partitions,
        earliest={tp.partition: offset for tp, offset in earliest.items()},
        ends={tp.partition: offset for tp, offset in ends.items()},
    ):
        pipeline.catalog_ready = True
        logger.info("catalog read: events for items not in it are now rejected")


@app.on_partitions_revoked.connect
async def forget_revoked_catalog_partitions(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
    """A catalog partition moved: this worker may miss its new items, so stop rejecting."""
    name = catalog_topic.get_topic_name()
    lost = [tp for tp in revoked if tp.topic == name]
    for tp in lost:
        catalog_progress.forget(tp.partition)
    if lost and worker_pipeline().catalog_ready:
        worker_pipeline().catalog_ready = False
        logger.warning("catalog partitions revoked: unknown items are accepted from now on")
