"""``GET /users/{user_id}/recommendations``, ``/profile``, ``/wrapped``; ``/items/{id}/similar``.

Every answer is JSON, errors too (:class:`stream.serving.ApiError`). A user is
answered only by the worker that owns the user's partition (421 elsewhere, see
:func:`stream.serving.check_owner`); item-side state is replicated, so any
worker answers for items.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents import assigned_partitions, worker_pipeline
from stream.app import app
from stream.serving import (
    ApiError,
    check_owner,
    current_list,
    parse_k,
    parse_period,
    parse_top,
    profile_document,
    similar_document,
    wrapped_document,
)
from stream.settings import get_settings
from stream.topics import EVENT_TYPE_TOPICS


def _check_owner(user_id: str) -> None:
    consumer = app.consumer
    partitions = get_settings().partitions
    event_topics = {}
    for topic in EVENT_TYPE_TOPICS.values():
        name = topic.get_topic_name()
        event_topics[name] = consumer.topic_partitions(name) or partitions
    check_owner(user_id, event_topics=event_topics, assigned=assigned_partitions())


def _answer(web: Any, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ApiError as error:
        return web.json(error.to_json(), status=error.status)


@app.page("/users/{user_id}/recommendations")
async def serve_recommendations(web: Any, request: Any, user_id: str) -> Any:
    def build() -> Any:
        _check_owner(user_id)
        payload, source = current_list(worker_pipeline(), user_id)
        # the list exactly as published (schemas/recommendation-list.schema.json)
        return web.bytes(
            payload,
            content_type="application/json",
            headers={"X-Encore-List-Source": source},
        )

    return _answer(web, build)


@app.page("/users/{user_id}/profile")
async def serve_profile(web: Any, request: Any, user_id: str) -> Any:
    def build() -> Any:
        k = parse_k(request.query)
        _check_owner(user_id)
        return web.json(profile_document(worker_pipeline(), user_id, k))

    return _answer(web, build)


@app.page("/users/{user_id}/wrapped")
async def serve_wrapped(web: Any, request: Any, user_id: str) -> Any:
    def build() -> Any:
        period = parse_period(request.query)
        top = parse_top(request.query)
        _check_owner(user_id)
        # the same document as an answer on the wrapped topic (schemas/wrapped.schema.json)
        return web.json(wrapped_document(worker_pipeline(), user_id, period, top))

    return _answer(web, build)


@app.page("/items/{item_id}/similar")
async def serve_similar_items(web: Any, request: Any, item_id: str) -> Any:
    def build() -> Any:
        k = parse_k(request.query)
        return web.json(similar_document(worker_pipeline(), item_id, k))

    return _answer(web, build)
