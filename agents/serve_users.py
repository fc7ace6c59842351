"""``/users/{user_id}``: ask to forget a user (``DELETE``), or what this worker holds (``GET``).

``DELETE`` does not forget anyone itself: it publishes a deletion request (the same
document an upstream service would send) to the ``deletions`` topic, keyed by the
user, and answers ``202`` once the broker has it. The worker that owns the user's
partition applies it (:mod:`agents.forget_users`), so the deletion is in the log,
ordered with that user's other requests, and survives a crash of this worker.
An optional JSON body may carry ``reason`` and ``request_id``.

``GET`` answers from this worker's memory only: on a worker that does not own the
user's partitions it says ``404`` (unknown) even for a known user.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from faust import web

from agents import worker_pipeline
from stream.app import app
from stream.contracts import (
    Rejection,
    decode_deletion_request,
    deletion_request_to_wire,
    format_time,
)
from stream.topics import deletions_topic

logger = logging.getLogger(__name__)

_BODY_FIELDS = frozenset({"reason", "request_id"})


def _bad_request(view: web.View, error: str, detail: str, field: str | None = None) -> Any:
    return view.error(400, error, detail=detail, field=field)


@app.page("/users/{user_id}")
class ServeUser(web.View):
    async def get(self, request: web.Request, user_id: str) -> web.Response:
        pipeline = worker_pipeline()
        counts = pipeline.engine.user_counts(user_id)
        forgotten_at = pipeline.forgotten.get(user_id)
        return self.json(
            {
                "user_id": user_id,
                "known": counts is not None,
                "events": counts,
                "forgotten_at": None if forgotten_at is None else format_time(forgotten_at),
            },
            status=200 if counts is not None else 404,
        )

    async def delete(self, request: web.Request, user_id: str) -> web.Response:
        body = await self.read_request_content(request)
        options: Any = {}
        if body.strip():
            try:
                options = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                return _bad_request(self, "invalid_json", str(error))
            if not isinstance(options, dict) or set(options) - _BODY_FIELDS:
                return _bad_request(
                    self, "bad_request", "the body is a JSON object with reason and request_id"
                )
        doc = {
            "user_id": user_id,
            "requested_at": format_time(time.time()),
            "request_id": options.get("request_id") or uuid.uuid4().hex,
            **({"reason": options["reason"]} if options.get("reason") is not None else {}),
        }
        try:
            key = user_id.encode()
        except UnicodeEncodeError:
            return _bad_request(self, "not_utf8", "the user id is not UTF-8", "data.user_id")
        # exactly what forget_users will accept: the same decoder, the same key
        deletion = decode_deletion_request(orjson.dumps(doc), key=key)
        if isinstance(deletion, Rejection):
            return _bad_request(self, str(deletion.reason), deletion.detail, deletion.field)
        value = orjson.dumps(deletion_request_to_wire(deletion))
        topic = deletions_topic.get_topic_name()
        try:
            # (user_id, DeletionRequest) -> the deletions topic
            delivery = await app.producer.send(topic, key, value, None, None, None)
            metadata = await delivery
        except Exception as error:  # noqa: BLE001 - say so; the client may retry
            logger.warning("deletion request not published (%r)", error)
            return self.error(503, "not_published", detail=f"{type(error).__name__}: {error}")
        return self.json(
            {
                "status": "accepted",
                **deletion_request_to_wire(deletion),
                "topic": topic,
                "partition": metadata.partition,
                "offset": metadata.offset,
            },
            status=202,
        )
