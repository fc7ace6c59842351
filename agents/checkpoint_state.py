"""Checkpoint the worker's state every few seconds and commit the offsets it covers."""

from __future__ import annotations

import logging

from agents import open_worker_state
from stream.app import app

logger = logging.getLogger(__name__)

app.open_state = open_worker_state

#: How often the timer looks (a checkpoint starts at most every checkpoint interval).
POLL_SECONDS = 0.25


@app.timer(POLL_SECONDS)
async def checkpoint_state() -> None:
    checkpointer = app.checkpointer
    consumer = app.consumer
    if checkpointer is None:
        return
    positions = checkpointer.poll()
    if positions is not None:
        await consumer.commit_positions(positions)
    # Only between chunks: the positions copied at the fork must describe the state.
    if checkpointer.due() and not consumer.handling and consumer.assignment():
        checkpointer.start()
