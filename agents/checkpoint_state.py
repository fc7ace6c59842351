"""Checkpoint the worker's state every few seconds and commit the offsets it covers;
take over the users of newly assigned partitions (stream.checkpoint)."""

from __future__ import annotations

import logging

from faust.types import TP

from agents import open_worker_state, worker_checkpointer
from agents.share_item_updates import item_updates_reader, send_pending_item_updates
from stream.app import app

logger = logging.getLogger(__name__)

#: How long a worker given partitions waits to have read the other workers' item
#: updates before it processes their records (past it: processed anyway, logged).
ITEM_UPDATES_WAIT_SECONDS = 10.0


async def take_over_partitions(assigned: set[TP]) -> None:
    """Before records of newly assigned partitions are processed: read the item updates
    there are (their item effects must not be learned twice), then move in the users of
    partitions whose newest state is in another worker's checkpoint."""
    if not await item_updates_reader.read_to_end(ITEM_UPDATES_WAIT_SECONDS):
        logger.warning(
            "item updates not read to the end within %.0fs; processing anyway",
            ITEM_UPDATES_WAIT_SECONDS,
        )
    user_partitions = {tp.partition for tp in assigned if tp.topic in app.batch_handlers}
    worker_checkpointer().adopt(user_partitions)


app.open_state = open_worker_state
app.on_assigned = take_over_partitions
app.on_revoking = send_pending_item_updates

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
