"""Keep the engine's catalog in step with the compacted catalog topic, in every worker.

Any user may be recommended any item, so every worker reads every catalog
partition from the beginning and then follows it (not a consumer-group agent).
Once it has read what the topic held when it started, the catalog counts as read
(``Pipeline.catalog_ready``): with ``ENCORE_UNKNOWN_ITEMS=reject``, events for
items it does not list are rejected from then on. Read from the beginning after
every restart too, so that also holds for a worker restored from a checkpoint.

An invalid item becomes a dead letter from every worker that reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agents import ingest_or_dead_letter, worker_pipeline
from stream.app import app
from stream.settings import get_settings
from stream.topics import CATALOG
from stream.whole_topic import WholeTopicReader

logger = logging.getLogger(__name__)


async def apply_catalog(records: Sequence[Any]) -> None:
    # (item_id bytes, item JSON bytes or None for a tombstone) -> item | removed id | Rejection
    await ingest_or_dead_letter(records, worker_pipeline().ingest_catalog)


catalog_reader = WholeTopicReader(
    get_settings().topic_name(CATALOG.base_name), get_settings().aiokafka_options(), apply_catalog
)


@app.task
async def track_catalog() -> None:
    await catalog_reader.follow()


@app.timer(interval=0.5, name="watch_catalog_progress")
async def watch_catalog_progress() -> None:
    """Tell the pipeline once the catalog as it was at start-up has been read."""
    pipeline = worker_pipeline()
    if not pipeline.catalog_ready and catalog_reader.caught_up_with_start:
        pipeline.catalog_ready = True
        logger.info("catalog read (%d items)", pipeline.catalog_items)
