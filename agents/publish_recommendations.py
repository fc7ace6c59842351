"""Publish a fresh list for every user who had events since the last tick (debounced)."""

from __future__ import annotations

import asyncio
import logging
import time

from faust.exceptions import ProducerSendError

from agents import worker_pipeline
from stream.app import app
from stream.contracts import encode_recommendation_list
from stream.settings import get_settings
from stream.topics import recommendations_topic

logger = logging.getLogger(__name__)

#: Users per slice of a tick; the event loop is released between slices.
SLICE = 64


async def publish_dirty_lists(budget_seconds: float | None = None) -> int:
    """One tick: a list for each user with new events, however many events they had.

    Oldest-dirty users first; once ``budget_seconds`` is spent the rest wait for the
    next tick, so a burst of users never starves learning. Most of these lists are
    quick ones (the user's last list patched, :meth:`Pipeline.recommend`); when no
    user waits and budget is left, users whose latest list was quick get their rows
    ranked again and published (:meth:`Pipeline.take_reranks`), oldest first. A list whose delivery
    failed leaves its user dirty, to be retried; so does a list the producer refused
    to take (its buffer stayed full for ``producer_request_timeout``: a long broker
    outage), which also ends the tick. A user forgotten while this tick runs gets
    no list (:meth:`Pipeline.recommend` says ``None``). Returns how many lists were
    sent.
    """
    pipeline = worker_pipeline()
    topic = recommendations_topic.get_topic_name()
    deadline = None if budget_seconds is None else time.perf_counter() + budget_seconds
    sent = 0
    failed: list[str] = []
    refused = False
    while not refused and (deadline is None or time.perf_counter() < deadline):
        users = pipeline.take_dirty(SLICE)
        rerank = not users
        if rerank:
            users = pipeline.take_reranks(SLICE)
            if not users:
                break
        pipeline.lists_in_flight += len(users)
        sending: list[tuple[str, bytes]] = []
        try:
            deliveries = []
            for index, user_id in enumerate(users):
                recommendations = pipeline.recommend(user_id, rerank=rerank)
                if recommendations is None:
                    continue  # forgotten since it was queued (a send above yielded)
                # (user_id, RecommendationList) -> wire bytes -> the compacted recommendations topic
                payload = encode_recommendation_list(recommendations)
                try:
                    delivery = await app.producer.send(
                        topic, user_id.encode(), payload, None, None, None
                    )
                except ProducerSendError as error:  # e.g. from aiokafka's KafkaTimeoutError
                    logger.warning(
                        "producer refused lists (%r); %d users will be retried",
                        error,
                        len(users) - index,
                    )
                    failed.extend(users[index:])
                    refused = True
                    break
                sending.append((user_id, payload))
                deliveries.append(delivery)
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        finally:
            pipeline.lists_in_flight -= len(users)
        delivered_at = time.time()  # the broker acknowledged them: freshness ends here
        for (user_id, payload), outcome in zip(sending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                logger.warning("list for %s not delivered (%r); will retry", user_id, outcome)
                failed.append(user_id)
            else:
                pipeline.delivered(user_id, payload, at=delivered_at)
                sent += 1
    for user_id in failed:  # next tick, not this one: the broker needs time
        pipeline.mark_dirty(user_id)
    return sent


_interval = get_settings().publish_interval_ms / 1000


def pause_after_tick(sent: int, users_waiting: int, interval: float = _interval) -> float:
    """Seconds to wait before the next tick.

    Lists sent and users still waiting means the tick ran out of budget: the next
    one starts as soon as learning had its turn (one chunk of records), so a
    backlog of lists is worked off at full speed instead of a slice per interval.
    Otherwise wait the interval: with nobody waiting, so that a burst of one
    user's events gets one list; with nothing sent (the broker refused or failed
    every list), so that it is not asked again at once.

    >>> pause_after_tick(64, users_waiting=12, interval=0.05)
    0.0
    >>> pause_after_tick(64, 0, 0.05), pause_after_tick(0, 12, 0.05)
    (0.05, 0.05)
    """
    return 0.0 if sent and users_waiting else interval


@app.task
async def publish_recommendations() -> None:
    pipeline = worker_pipeline()
    while not app.should_stop:
        # at most half an interval per tick, so learning keeps up under load
        sent = await publish_dirty_lists(budget_seconds=_interval / 2)
        pause = pause_after_tick(sent, pipeline.users_waiting)
        if pause:
            await app.sleep(pause)
        else:
            await asyncio.sleep(0)  # the consumer's next chunk runs here
