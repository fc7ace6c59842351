"""Batch consumption inside Faust: whole per-partition chunks, acked after processing.

Faust hands every message to an agent through about three event-loop turns, two
task creations and a lock (about 70 µs per message on our machine: see
``docs/faust-hot-path.md``), which caps a worker near 10,000 events/s before it
does any work. For the topics that carry events, :class:`BatchConsumer` instead
gives each partition's fetched records, in offset order and in chunks, to a plain
handler, and only *after* the handler returned acks the whole range through
Faust's own offset bookkeeping — so Faust's commit logic (interval, commit-every,
wait-for-acks on revoke and stop) still commits only processed offsets:
at-least-once, as with a stock agent. Every other topic keeps the stock path.

What a batch handler does not get: a Faust ``Event`` (so no table writes from it —
hot state lives in the engine), Stream processors and per-event sensors.

The subclass relies on attributes of faust-streaming 0.15.3's ``Consumer`` (pinned
exactly in ``pyproject.toml``); :func:`check_faust_internals` fails fast at start-up
if an upgrade moved them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import Message, ack_lock
from mode.utils.futures import notify

from stream.metrics import PartitionProgress

#: ``handler(tp, records)``: records are aiokafka ``ConsumerRecord`` s of one
#: partition, in offset order. It must not raise for bad input (dead-letter it);
#: an exception stops the worker without acking the chunk (it is redelivered).
BatchHandler = Callable[[TP, Sequence[Any]], Awaitable[None] | None]


class BatchProgress(Protocol):
    """Where batch handlers' progress is kept when their state is checkpointed."""

    def position(self, topic: str, partition: int) -> int | None: ...

    def advance(self, topic: str, partition: int, next_offset: int) -> None: ...


_FAUST_CONSUMER_INTERNALS = (
    "_wait_next_records",
    "_acked",
    "_acked_index",
    "_committed_offset",
    "_n_acked",
    "_commit_every",
    "_unacked_messages",
    "_read_offset",
    "_buffered_partitions",
    "_thread",
    "flow_active",
    "callback",
    "_to_message",
)


def check_faust_internals(consumer: Any) -> None:
    """Raise if this Faust build lacks what :class:`BatchConsumer` relies on."""
    missing = [name for name in _FAUST_CONSUMER_INTERNALS if not hasattr(consumer, name)]
    if missing:
        raise RuntimeError(
            f"faust-streaming internals changed ({', '.join(missing)} missing): "
            "stream.batching needs faust-streaming 0.15.3"
        )


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with batch delivery for topics that have a handler.

    ``app.batch_handlers`` maps topic name -> handler; ``app.batch_chunk_size``
    caps the records per handler call (the longest the event loop is held).
    """

    async def on_start(self) -> None:
        check_faust_internals(self)
        self._next_offset: dict[TP, int] = {}
        #: A handler is running (between records is where a checkpoint may start).
        self.handling = False
        await super().on_start()

    def _ack_range(self, tp: TP, first: int, last: int) -> None:
        """Mark offsets ``first..last`` processed, as ``Consumer.ack`` does for one message.

        Covering offsets that never arrived (compaction gaps) is right: the range
        starts at the committed offset or the previous chunk's end, and anything
        fetched but not processed was seeked back, never skipped.
        """
        with ack_lock:
            committed = self._committed_offset[tp]
            if committed is not None and first < committed:
                first = committed
            if first > last:
                return
            acked_index = self._acked_index[tp]
            offsets = [o for o in range(first, last + 1) if o not in acked_index]
            acked_index.update(offsets)
            self._acked[tp].extend(offsets)
            self._n_acked += len(offsets)
        notify(self._waiting_for_ack)

    def _refetch_from(self, tp: TP, offset: int) -> None:
        """Records from ``offset`` on were fetched but not processed: fetch them again."""
        try:
            self._thread.seek(tp, offset)
        except Exception:  # noqa: BLE001 - revoked: its new owner starts at the committed offset
            self._next_offset.pop(tp, None)

    def _may_process(self, tp: TP, generation: int, active: set[TP] | None) -> bool:
        app = self.app
        return (
            not self.should_stop
            and generation == app.consumer_generation_id
            and self.flow_active
            and app.flow_control.is_active()
            and (active is None or tp in active or tp in self._buffered_partitions)
        )

    async def _drain_messages(self, fetcher: Any) -> None:
        """The Fetcher's loop (replaces Faust's per-message one)."""
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # noqa: SLF001 - see module docstring
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records:
                    continue
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if not self._may_process(tp, generation, active):
                        self._refetch_from(tp, batch[0].offset)
                        continue
                    done_until = self._next_offset.get(tp)
                    if done_until is not None and batch[0].offset < done_until:
                        batch = [r for r in batch if r.offset >= done_until]  # re-fetched
                        if not batch:
                            continue
                    handler = self.app.batch_handlers.get(tp.topic)
                    if handler is None:
                        await self._deliver_one_by_one(tp, batch)
                    else:
                        await self._process_in_chunks(tp, batch, handler, generation)
        except self.consumer_stopped_errors:
            if not self.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.app.should_stop:
                raise

    async def _process_in_chunks(
        self, tp: TP, batch: Sequence[Any], handler: BatchHandler, generation: int
    ) -> None:
        app = self.app
        size = app.batch_chunk_size
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            if not self._may_process(tp, generation, None):
                self._refetch_from(tp, chunk[0].offset)
                return
            await app.producer.buffer.wait_until_ebb()
            # An in-flight marker: Faust's wait_empty() (on revoke and stop) waits
            # for the chunk being processed to be acked.
            in_flight = Message(tp.topic, tp.partition, -1, None, None, None, None, None, None)
            self._unacked_messages.add(in_flight)
            self.handling = True
            try:
                await self._handle_chunk(tp, chunk, handler)
                self._next_offset[tp] = chunk[-1].offset + 1
                self._read_offset[tp] = chunk[-1].offset
            finally:
                self.handling = False
                in_flight.acked = True
                self._unacked_messages.discard(in_flight)
            if (
                app.batch_progress is None
                and self._commit_every is not None
                and self._n_acked >= self._commit_every
            ):
                self._n_acked = 0
                # Shielded: Faust drops acked offsets from its list before the broker
                # commit completes, so a cancel mid-commit (stop, rebalance) would
                # lose the progress (redelivery, not loss — but avoidable).
                await asyncio.shield(self.commit())
            await asyncio.sleep(0)  # timers, the web server and the commit timer run here

    async def _handle_chunk(self, tp: TP, chunk: Sequence[Any], handler: BatchHandler) -> None:
        """Run the handler on a chunk, then record its progress.

        With checkpointed state (``app.batch_progress``) the state's own position
        says where it stands: records below it (redelivered because a checkpoint's
        commit did not happen before a crash) are skipped, and offsets are
        committed later from the checkpoint that covers them. Otherwise the chunk
        is acked for Faust's commit logic.
        """
        progress = self.app.batch_progress
        if progress is not None:
            done = progress.position(tp.topic, tp.partition)
            if done is not None and chunk[0].offset < done:
                chunk = [record for record in chunk if record.offset >= done]
                if not chunk:
                    return
        result = handler(tp, chunk)
        if result is not None:
            await result
        if progress is not None:
            progress.advance(tp.topic, tp.partition, chunk[-1].offset + 1)
            return
        first = self._next_offset.get(tp)
        if first is None:  # first chunk since assignment or a seek
            committed = self._committed_offset[tp]
            first = (
                committed
                if committed is not None and committed <= chunk[0].offset
                else chunk[0].offset
            )
        self._ack_range(tp, first, chunk[-1].offset)

    async def _deliver_one_by_one(self, tp: TP, batch: Sequence[Any]) -> None:
        """The stock path, for topics without a batch handler (tables, ordinary agents)."""
        for record in batch:
            await self.wait_first(
                self.callback(self._to_message(tp, record)), self.suspend_flow.wait()
            )
            self._read_offset[tp] = record.offset

    async def commit_positions(self, positions: Mapping[tuple[str, int], int]) -> bool:
        """Commit the positions a checkpoint covers (next offsets), for assigned partitions."""
        offsets = {}
        for (topic, partition), offset in positions.items():
            tp = TP(topic, partition)
            committed = self._committed_offset.get(tp)
            if committed is None or offset > committed:
                offsets[tp] = offset
        if not offsets:
            return False
        return await self._commit_offsets(offsets)

    async def _checkpoint_and_commit(self) -> None:
        """Write a checkpoint now and commit what it covers (stop, revocation)."""
        checkpointer = self.app.checkpointer
        if checkpointer is None or not self.assignment():
            return
        await self.wait_empty()
        try:
            positions = await checkpointer.write()
            if positions is not None:
                await self.commit_positions(positions)
        except Exception as error:  # noqa: BLE001 - the last checkpoint still holds
            self.log.warning("checkpoint before stop/revoke failed: %r", error)
        if self.app.on_revoking is not None:
            try:
                await self.app.on_revoking()
            except Exception as error:  # noqa: BLE001 - sent again after the next checkpoint
                self.log.warning("after-checkpoint step on stop/revoke failed: %r", error)

    async def on_stop(self) -> None:
        await self._checkpoint_and_commit()
        await super().on_stop()

    def partition_progress(self) -> list[PartitionProgress]:
        """Highwater, committed and processed offsets of every assigned partition.

        Read from the consumer's last fetch and Faust's bookkeeping: no broker request.
        ``None`` where not known yet (no fetch, nothing committed or processed).
        """
        thread = self._thread
        next_offsets: dict[TP, int] = getattr(self, "_next_offset", {})
        progress = []
        for tp in sorted(self.assignment()):
            try:
                highwater = thread.highwater(tp)
            except Exception:  # noqa: BLE001 - revoked between assignment() and here
                highwater = None
            progress.append(
                PartitionProgress(
                    tp.topic,
                    tp.partition,
                    highwater,
                    self._committed_offset.get(tp),
                    next_offsets.get(tp),  # batch topics only; others count from committed
                )
            )
        return progress

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        if self.app.on_assigned is not None:
            await self.app.on_assigned(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.app.checkpointer is not None:
            await self._checkpoint_and_commit()
        # Commit what was processed *before* Faust forgets the acks of revoked
        # partitions; otherwise every rebalance redelivers everything since the
        # last periodic commit.
        elif self.assignment():
            try:
                await self.commit()
            except Exception as error:  # noqa: BLE001 - at-least-once holds without it
                self.log.warning("commit before revoke failed: %r", error)
        for tp in revoked:
            self._next_offset.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
