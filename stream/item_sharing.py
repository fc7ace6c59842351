"""Item updates between workers: what each learned about items from its own users.

Every worker learns from the users of its partitions only, but scores against
the whole catalog with item-side state (popularity, trending, co-occurrence,
item factors) that should reflect *every* user. So each worker keeps a replica
of that state: about once a second it takes what its own events changed
(:meth:`Engine.take_item_updates`: additive, keyed by item id) and publishes it on
the ``item-updates`` topic; every worker applies every other worker's updates.
Staleness is bounded by the interval plus the topic's latency.

No item effect is applied twice or lost when partitions move, because every
update says which input records it covers: ``through`` lists, per input
partition it learned from, the next offset not covered. A worker keeps the same
figure for its replica (:attr:`Pipeline.item_positions`) and

- applies an update only if it covers records its replica does not have
  (its own updates come back and are dropped; so are updates sent again);
- learns a record below its replica's position for the user only
  (:meth:`Engine.learn` with ``item_side=False``): a worker that takes over a
  partition, or restarts from a checkpoint, replays records whose item effects
  already reached it through this topic.

For that, a worker that is given partitions first reads this topic to its end.
Updates taken but not yet acknowledged by the broker are part of checkpoints and
sent again after a restart.

The wire format is a JSON header line (worker, sequence number, ``through``) and
the engine's encoding of the updates (:mod:`stream.engine.item_updates`).

This module has no Faust import.
"""

from __future__ import annotations

import orjson

from stream.contracts import Reason, Rejection
from stream.engine.item_updates import decode_item_updates, encode_item_updates
from stream.pipeline import Pipeline

#: Largest item-update message (topic ``max.message.bytes`` and the producer's limit).
ITEM_UPDATE_MAX_BYTES = 32 * 1024 * 1024


def take_item_update(pipeline: Pipeline, worker: str) -> bytes | None:
    """Take what the engine learned about items since the last take, as a message.

    The message is also kept in ``pipeline.pending_item_updates`` until
    :func:`delivered` says the broker has it. ``None`` when nothing was learned.
    """
    updates = pipeline.engine.take_item_updates()
    covered = pipeline.item_partitions_learned
    if updates is None and not covered:
        return None
    pipeline.item_update_sequence += 1
    sequence = pipeline.item_update_sequence
    through = [[topic, p, pipeline.item_positions[(topic, p)]] for topic, p in sorted(covered)]
    covered.clear()
    header = orjson.dumps({"worker": worker, "sequence": sequence, "through": through})
    body = b"" if updates is None else encode_item_updates(updates)
    message = header + b"\n" + body
    pipeline.pending_item_updates[sequence] = message
    return message


def delivered(pipeline: Pipeline, sequence: int) -> None:
    """The broker has the update with this sequence number: no need to send it again."""
    pipeline.pending_item_updates.pop(sequence, None)


def apply_item_update(pipeline: Pipeline, raw: bytes | None) -> bool | Rejection:
    """Apply another worker's update to this worker's replica.

    ``True`` if applied, ``False`` if the replica already had everything it covers
    (this worker's own updates, or one sent again), a :class:`Rejection` if the
    message is malformed (nothing of it applied).
    """
    try:
        if not raw:
            raise ValueError("empty message")
        head, newline, body = raw.partition(b"\n")
        if not newline:
            raise ValueError("no header line")
        header = orjson.loads(head)
        through = [(str(t), int(p), int(o)) for t, p, o in header["through"]]
    except (ValueError, KeyError, TypeError) as error:
        return Rejection(Reason.INVALID_JSON, f"malformed item update header: {error}")
    positions = pipeline.item_positions
    if not any(offset > positions.get((topic, p), 0) for topic, p, offset in through):
        pipeline.item_updates_skipped += 1
        return False
    if body:
        try:
            updates = decode_item_updates(body)
        except ValueError as error:
            return Rejection(Reason.SCHEMA_VIOLATION, f"malformed item update: {error}")
        pipeline.engine.apply_item_updates(updates)
    for topic, p, offset in through:
        if offset > positions.get((topic, p), 0):
            positions[(topic, p)] = offset
    pipeline.item_updates_applied += 1
    return True
