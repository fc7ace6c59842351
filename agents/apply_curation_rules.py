"""Keep the editorial rules of the compacted curation topic in every worker.

Each worker needs every rule (a rule may touch any user), so this is not a
consumer-group agent: every worker reads all partitions of ``curation`` from the
beginning and then follows them (:class:`stream.whole_topic.WholeTopicReader`). A
changed rule marks the affected users dirty; the publishing timer republishes
their lists.

An invalid rule becomes a dead letter from every worker that reads it (and again
after a restart, while it stays in the compacted log): consumers of
``dead-letters`` can tell the copies apart by topic, partition and offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import ingest_or_dead_letter, worker_pipeline
from stream.app import app
from stream.settings import get_settings
from stream.topics import CURATION
from stream.whole_topic import WholeTopicReader


async def apply_rules(records: Sequence[Any]) -> None:
    # (rule_id bytes, rule JSON bytes or None for a tombstone) -> Rule | removed id | Rejection
    await ingest_or_dead_letter(records, worker_pipeline().ingest_curation)


@app.task
async def apply_curation_rules() -> None:
    settings = get_settings()
    name = settings.topic_name(CURATION.base_name)
    await WholeTopicReader(name, settings.aiokafka_options(), apply_rules).follow()
