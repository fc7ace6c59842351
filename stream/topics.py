"""Every topic Encore reads or writes, declared once.

Input events are JSON decoded by :mod:`stream.contracts` (raw bytes here, so a bad
message reaches the ingest agent and becomes a dead letter instead of a crash in
Faust's deserializer). Topics are ``internal=True`` so the worker creates them
with the configured partition count and compaction when they do not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.app import app
from stream.item_sharing import ITEM_UPDATE_MAX_BYTES
from stream.models import EventType
from stream.settings import Settings, get_settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    base_name: str
    compacted: bool = False
    #: fixed partition count (``None``: ENCORE_PARTITIONS)
    partitions: int | None = None
    #: extra topic configs
    configs: tuple[tuple[str, str], ...] = ()


PLAYS = TopicSpec("plays")
SKIPS = TopicSpec("skips")
REPLAYS = TopicSpec("replays")
CATALOG = TopicSpec("catalog", compacted=True)
RECOMMENDATIONS = TopicSpec("recommendations", compacted=True)
DEAD_LETTERS = TopicSpec("dead-letters")
#: Deletion requests, key = user_id, as many partitions as the event topics: Faust
#: assigns co-partitioned topics alike, so the worker that owns a user's events
#: applies their deletion.
DELETIONS = TopicSpec("deletions")
CURATION = TopicSpec("curation", compacted=True)
WRAPPED_REQUESTS = TopicSpec("wrapped-requests")
WRAPPED = TopicSpec("wrapped")
#: What each worker learned about items from its own users (popularity, co-occurrence,
#: item factors), as additive updates every worker applies (stream.item_sharing). One
#: partition: one order for everyone; messages may be large (an update per second).
ITEM_UPDATES = TopicSpec(
    "item-updates", partitions=1, configs=(("max.message.bytes", str(ITEM_UPDATE_MAX_BYTES)),)
)
ALL_TOPICS = (
    PLAYS,
    SKIPS,
    REPLAYS,
    CATALOG,
    RECOMMENDATIONS,
    DEAD_LETTERS,
    DELETIONS,
    CURATION,
    WRAPPED_REQUESTS,
    WRAPPED,
    ITEM_UPDATES,
)
EVENT_TOPICS = {EventType.PLAY: PLAYS, EventType.SKIP: SKIPS, EventType.REPLAY: REPLAYS}


def _declare(spec: TopicSpec, settings: Settings) -> object:
    return app.topic(
        settings.topic_name(spec.base_name),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        compacting=spec.compacted or None,
        internal=True,
    )


_settings = get_settings()
plays_topic = _declare(PLAYS, _settings)
skips_topic = _declare(SKIPS, _settings)
replays_topic = _declare(REPLAYS, _settings)
recommendations_topic = _declare(RECOMMENDATIONS, _settings)
dead_letters_topic = _declare(DEAD_LETTERS, _settings)
deletions_topic = _declare(DELETIONS, _settings)
# curation, catalog and item-updates are not declared for Faust: every worker reads all
# of them with its own group-less consumer (agents/apply_curation_rules.py,
# agents/track_catalog.py, agents/share_item_updates.py)
wrapped_requests_topic = _declare(WRAPPED_REQUESTS, _settings)
wrapped_topic = _declare(WRAPPED, _settings)

#: event type -> the Faust topic that carries it
EVENT_TYPE_TOPICS = {
    EventType.PLAY: plays_topic,
    EventType.SKIP: skips_topic,
    EventType.REPLAY: replays_topic,
}


async def ensure_topics(settings: Settings) -> list[str]:
    """Create any missing Encore topic with the configured partitions; returns those created.

    For tools that produce before a worker has started (the simulator, tests): the
    broker's auto-creation would otherwise make single-partition topics.
    """
    admin = AIOKafkaAdminClient(**settings.aiokafka_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic_name(spec.base_name),
                num_partitions=spec.partitions or settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs={
                    **({"cleanup.policy": "compact"} if spec.compacted else {}),
                    **dict(spec.configs),
                },
            )
            for spec in ALL_TOPICS
            if settings.topic_name(spec.base_name) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # created concurrently by a worker: fine
        return [topic.name for topic in wanted]
    finally:
        await admin.close()
