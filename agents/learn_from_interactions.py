"""Consume plays, skips and replays: validate, learn, dead-letter what is bad.

One agent per input topic (``learn_from_plays``, ``learn_from_skips``,
``learn_from_replays``): each knows the event type its topic must carry, and each
can be driven alone with ``agent.test_context()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.models import EventType
from stream.topics import EVENT_TYPE_TOPICS


def _learner(event_type: EventType) -> Callable[[AsyncIterator[Any]], Coroutine[Any, Any, None]]:
    async def learn(stream: AsyncIterator[Any]) -> None:
        pipeline = worker_pipeline()
        async for event in stream.events():  # type: ignore[attr-defined]
            # (key bytes, raw value bytes)
            outcome = pipeline.ingest_event(event.value, key=event.key, event_type=event_type)
            # Interaction (learned, user marked dirty) | Rejection
            if isinstance(outcome, Rejection):
                await send_dead_letter(event, outcome)

    return learn


learn_from_plays = app.agent(EVENT_TYPE_TOPICS[EventType.PLAY], name="learn_from_plays")(
    _learner(EventType.PLAY)
)
learn_from_skips = app.agent(EVENT_TYPE_TOPICS[EventType.SKIP], name="learn_from_skips")(
    _learner(EventType.SKIP)
)
learn_from_replays = app.agent(EVENT_TYPE_TOPICS[EventType.REPLAY], name="learn_from_replays")(
    _learner(EventType.REPLAY)
)
