"""Answer Wrapped requests: a summary of the user's listening on the wrapped topic.

Requests are keyed by user_id and co-partitioned with the event topics, so the
worker that reads a request holds that user's counters. The summary reflects
the events this worker has learned when it reads the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from faust.types import TP

from agents import send_dead_letter, worker_pipeline
from stream.app import app
from stream.contracts import Rejection
from stream.topics import wrapped_requests_topic, wrapped_topic


@app.batch_agent(wrapped_requests_topic)
async def answer_wrapped_requests(tp: TP, records: Sequence[Any]) -> None:
    pipeline = worker_pipeline()
    topic = wrapped_topic.get_topic_name()
    for record in records:
        # (user_id bytes, {"user_id", "period", ...} bytes)
        outcome = pipeline.answer_wrapped_request(record.value, key=record.key)
        # Wrapped document (dict) | Rejection
        if isinstance(outcome, Rejection):
            await send_dead_letter(record, outcome)
            continue
        delivery = await app.producer.send(
            topic, record.key, orjson.dumps(outcome), None, None, None
        )
        await delivery
