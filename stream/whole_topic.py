"""Read every partition of a topic in every worker, without a consumer group.

The catalog, the curation rules and the item updates are needed by every worker
(any user may be scored against any item or touched by any rule), so they are
not split by Kafka's group assignment: each worker reads all their partitions,
from the beginning or from offsets its checkpoint covers, and then follows them.

This module has no Faust import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

logger = logging.getLogger(__name__)

#: ``handle(records)``: records of one partition, in offset order.
RecordsHandler = Callable[[Sequence[Any]], Awaitable[None] | None]


class WholeTopicReader:
    """Follows every partition of ``topic``, handing each partition's records to ``handle``.

    Parameters
    ----------
    topic
        Full topic name.
    options
        aiokafka connection options (``Settings.aiokafka_options()``).
    handle
        Called with each fetched batch of one partition's records.
    start_offsets
        Called at each (re)start: partition -> next offset to read; partitions it
        leaves out are read from the beginning.
    max_records
        Records per fetch (bounds how long the event loop is held).
    """

    def __init__(
        self,
        topic: str,
        options: Mapping[str, Any],
        handle: RecordsHandler,
        *,
        start_offsets: Callable[[], Mapping[int, int]] | None = None,
        max_records: int = 1000,
    ) -> None:
        self.topic = topic
        self.options = dict(options)
        self.handle = handle
        self.start_offsets = start_offsets
        self.max_records = max_records
        #: partition -> next offset to read (after the handler returned)
        self.positions: dict[int, int] = {}
        #: end offsets when reading (re)started: reaching them = read what existed then
        self.start_ends: dict[int, int] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Event()
        self._task: asyncio.Future[None] | None = None

    @property
    def caught_up_with_start(self) -> bool:
        """Whether everything the topic held when reading started has been handled."""
        return self.start_ends is not None and self._reached(self.start_ends)

    def _reached(self, ends: Mapping[int, int]) -> bool:
        return all(self.positions.get(p, 0) >= end for p, end in ends.items())

    def ensure_running(self) -> asyncio.Future[None]:
        """Start reading in the background unless it runs already; its task.

        After an error it reconnects and goes on from the last handled offset.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def follow(self) -> None:
        """Run until cancelled (as a supervised task), sharing a run already started."""
        task = self.ensure_running()
        try:
            await asyncio.shield(task)
        finally:
            task.cancel()

    async def _run(self) -> None:
        """Read forever; after an error, reconnect and go on from the last handled offset."""
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading %s failed; reading again in 1 s", self.topic)
                await asyncio.sleep(1.0)

    async def _read(self) -> None:
        # Subscribed without a group: aiokafka assigns every partition (also ones added later).
        consumer = AIOKafkaConsumer(
            self.topic,
            **self.options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            wanted = dict(self.start_offsets()) if self.start_offsets is not None else {}
            wanted.update(self.positions)  # a restart after an error goes on from here
            for tp in partitions:
                if tp.partition in wanted:
                    consumer.seek(tp, wanted[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                self.positions.setdefault(tp.partition, await consumer.position(tp))
            self.start_ends = {tp.partition: offset for tp, offset in ends.items()}
            self._consumer = consumer
            self._progress.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                for tp, records in batches.items():
                    result = self.handle(records)
                    if result is not None:
                        await result
                    self.positions[tp.partition] = records[-1].offset + 1
                if batches:
                    self._progress.set()
        finally:
            self._consumer = None
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        for _ in range(100):
            assigned = consumer.assignment()
            if assigned:
                return sorted(assigned)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {self.topic} has no partitions (does it exist?)")

    async def read_to_end(self, timeout: float) -> bool:
        """Wait until everything the topic holds now has been handled; ``False`` on timeout.

        Starts reading if nothing did yet.
        """
        self.ensure_running()
        deadline = asyncio.get_running_loop().time() + timeout
        ends: dict[int, int] | None = None
        while True:
            consumer = self._consumer
            if ends is None and consumer is not None:
                try:
                    found = await consumer.end_offsets(list(consumer.assignment()))
                    ends = {tp.partition: offset for tp, offset in found.items()}
                except Exception as error:  # noqa: BLE001 - e.g. reconnecting: ask again
                    logger.debug("end offsets of %s unknown: %r", self.topic, error)
            if ends is not None and self._reached(ends):
                return True
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), timeout=min(left, 0.2))
            except TimeoutError:
                pass
