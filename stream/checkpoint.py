"""Checkpoints: a worker's state and the input offsets it covers, in a shared directory.

The engine lives in memory (no table write per event on the hot path), so a
crash would lose what it learned. Every few seconds the worker writes a
checkpoint: :meth:`Pipeline.snapshot` - the engine, the de-duplication window,
the counters, and per input partition the next offset the state does not cover
yet. Only those offsets are committed to Kafka, and after a checkpoint was
written. After a crash the worker restores the latest checkpoint, Kafka
redelivers from the committed offsets, and the worker skips records below the
checkpoint's positions: every event is in the state exactly once, whatever
point the crash hit (a checkpoint written but not yet committed included).

Several workers (one consumer group) share the directory, one file each
(``<worker name>.ckpt``; a small JSON header lists the positions, so a file's
coverage is read without loading it). When a partition is assigned to a worker
(:meth:`Checkpointer.adopt`), the file with the furthest positions for it - the
previous owner's last checkpoint, or the revocation checkpoint it wrote before
letting go - is loaded and that partition's users are moved into this worker's
state (:meth:`Pipeline.import_partitions`); users of partitions it no longer has
are dropped. That is how user state moves with partitions when workers join,
leave or die.

Writing does not stop the worker: it forks, and the child pickles the state as
it was at the fork (copy-on-write pages), writes it to a temporary file,
fsyncs it, renames it into place and exits; the parent keeps consuming and
polls for the child. Where ``os.fork`` does not exist the write is synchronous.
The child runs at a lower priority (``writer_niceness``): on a busy machine the
worker and the broker come first and the checkpoint finishes in the gaps. With
``max_cpu_share`` the interval stretches as the state grows, so that writing
costs at most that share of one core on average (a 3 s pickle with a share of
0.25 means a checkpoint every 12 s at the earliest): a crash then re-reads more
input, and still loses none.

This module has no Faust import: the worker's glue is in ``agents`` and
:mod:`stream.batching`.

>>> import tempfile
>>> from stream.engine import Engine, EngineConfig
>>> from stream.pipeline import Pipeline
>>> directory = Path(tempfile.mkdtemp())
>>> pipeline = Pipeline(Engine(EngineConfig(seed=0)))
>>> pipeline.advance("plays", 3, 42)
>>> checkpoints = Checkpointer(directory, pipeline, interval=5.0, name="w1")
>>> checkpoints.write_now()
{('plays', 3): 42}
>>> read_header(directory / "w1.ckpt").positions
{('plays', 3): 42}
>>> fresh = Pipeline(Engine(EngineConfig(seed=0)))
>>> Checkpointer(directory, fresh, interval=5.0, name="w1").restore(), fresh.position("plays", 3)
(True, 42)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import struct
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.engine import Engine
from stream.pipeline import Pipeline

logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".ckpt"
_MAGIC = b"ENCORECK"
_HEADER_LENGTH = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1

Positions = dict[tuple[str, int], int]


def progress(positions: Positions, partition: int) -> int:
    """How far ``positions`` got in ``partition`` (sum over its topics; 0 if absent).

    Offsets only grow, so of two states holding a partition the one with the
    larger sum is the later owner's, or the same owner's later state.

    >>> progress({("plays", 1): 40, ("skips", 1): 2, ("plays", 2): 9}, 1)
    42
    """
    return sum(offset for (_, p), offset in positions.items() if p == partition)


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint file covers, readable without loading the state."""

    path: Path
    worker: str
    written_at: float
    positions: Positions

    def progress(self, partition: int) -> int:
        """How far this checkpoint got in ``partition`` (see :func:`progress`)."""
        return progress(self.positions, partition)


def _encode_header(worker: str, positions: Positions) -> bytes:
    header = orjson.dumps(
        {
            "worker": worker,
            "written_at": time.time(),
            "positions": [
                [topic, partition, offset] for (topic, partition), offset in positions.items()
            ],
        }
    )
    return _MAGIC + _HEADER_LENGTH.pack(len(header)) + header


def read_header(path: Path) -> CheckpointHeader | None:
    """The header of the checkpoint at ``path``; ``None`` (logged) if it is not one."""
    try:
        with open(path, "rb") as file:
            start = file.read(len(_MAGIC) + _HEADER_LENGTH.size)
            if len(start) < len(_MAGIC) + _HEADER_LENGTH.size or not start.startswith(_MAGIC):
                raise ValueError("not an Encore checkpoint")
            (length,) = _HEADER_LENGTH.unpack(start[len(_MAGIC) :])
            header = orjson.loads(file.read(length))
        positions = {(str(t), int(p)): int(o) for t, p, o in header["positions"]}
        return CheckpointHeader(path, str(header["worker"]), float(header["written_at"]), positions)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
        logger.warning("ignoring checkpoint %s: %s", path, error)
        return None


def read_state(path: Path) -> bytes:
    """The pipeline snapshot stored in the checkpoint at ``path``."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError(f"{path} is not an Encore checkpoint")
    (length,) = _HEADER_LENGTH.unpack_from(data, len(_MAGIC))
    return data[len(_MAGIC) + _HEADER_LENGTH.size + length :]


@dataclass
class _Writer:
    """A checkpoint being written by a child process."""

    pid: int
    positions: Positions
    started: float


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while (un)pickling the state.

    Unpickling creates hundreds of thousands of objects, and each allocation
    threshold crossed starts a collection that walks all of them again: with it
    paused, restoring 20,000 users took 0.9 s instead of 3.5-6.6 s.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _die_with_parent(parent: int) -> None:
    """Make a checkpoint writer die with the worker that forked it (Linux).

    A writer that outlived a killed worker could rename its file into place
    after the restarted worker wrote a newer one, putting back a state older than
    the offsets already committed.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class Checkpointer:
    """Writes, restores and schedules checkpoints of one :class:`Pipeline`.

    Parameters
    ----------
    directory
        Where checkpoint files live (created if missing); shared by the workers of
        a consumer group.
    pipeline
        Whose state is saved and restored.
    interval
        Seconds between the starts of two checkpoints (at most one is written at a time).
    name
        This worker's name: its file is ``<name>.ckpt``. Unique among the workers
        sharing ``directory``, and the same after a restart.
    before_write
        Called just before the state is copied for a checkpoint.
    max_cpu_share
        If given, the next checkpoint starts no sooner than the CPU seconds the last
        forked writer used divided by this share (the interval is a minimum).
    writer_niceness
        Added to the forked writer's nice value (0 keeps the worker's priority).
    clock
        Monotonic clock (a fake in tests).
    """

    def __init__(
        self,
        directory: Path,
        pipeline: Pipeline,
        *,
        interval: float,
        name: str = "worker",
        before_write: Callable[[], object] | None = None,
        max_cpu_share: float | None = None,
        writer_niceness: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_cpu_share is not None and not 0 < max_cpu_share <= 1:
            raise ValueError(f"max_cpu_share must be in (0, 1], got {max_cpu_share!r}")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a checkpoint name must be a plain file name, got {name!r}")
        self.directory = Path(directory)
        self.pipeline = pipeline
        self.interval = interval
        self.name = name
        self.before_write = before_write
        self.max_cpu_share = max_cpu_share
        self.writer_niceness = writer_niceness
        self.clock = clock
        self.path = self.directory / f"{name}{CHECKPOINT_SUFFIX}"
        self._writer: _Writer | None = None
        self._last_started = clock()
        self.written = 0
        self.failed = 0
        self.last_seconds: float | None = None
        #: CPU seconds (user + system) of the last forked writer.
        self.last_cpu_seconds: float | None = None
        self.last_bytes: int | None = None
        self.restored = 0
        self.restored_events: int | None = None
        self.restore_seconds: float | None = None
        self.partitions_adopted = 0
        self.users_adopted = 0
        self.users_dropped = 0
        self.last_adopt_seconds: float | None = None

    # ------------------------------------------------------------------ restore
    def headers(self) -> list[CheckpointHeader]:
        """Headers of every checkpoint in the directory (this worker's included)."""
        found = []
        for path in sorted(self.directory.glob(f"*{CHECKPOINT_SUFFIX}")):
            header = read_header(path)
            if header is not None:
                found.append(header)
        return found

    def restore(self) -> bool:
        """Load this worker's checkpoint into the pipeline; ``False`` if there is none.

        A worker without a checkpoint of its own starts from the newest one in the
        directory: its item replica (popularity, co-occurrence, item factors) and
        the item-update offsets it covers; :meth:`adopt` then keeps only the users
        of the partitions this worker is given.
        """
        path = self.path
        if read_header(path) is None:
            others = sorted(self.headers(), key=lambda header: header.written_at)
            if not others:
                return False
            path = others[-1].path
        started = time.perf_counter()
        data = read_state(path)
        with _gc_paused():
            self.pipeline.restore(data)
        self.restored += 1
        self.restored_events = sum(self.pipeline.accepted.values())
        self.restore_seconds = time.perf_counter() - started
        logger.info(
            "restored checkpoint %s (%d bytes, %d users, %d events) in %.2fs",
            path,
            len(data),
            len(self.pipeline.engine.users),
            self.restored_events,
            self.restore_seconds,
        )
        return True

    def adopt(self, partitions: set[int]) -> dict[int, str]:
        """Make the state hold exactly the users of ``partitions`` (this worker's now).

        For each partition, the checkpoint that got furthest in it (any worker's) is
        compared with this state; if it is ahead, the partition's users are taken
        from it (replacing what this state had of them). Users of other partitions
        are dropped. Returns, per partition taken over, the file it came from.

        Call it between records, after the partitions were assigned and before
        their records are processed.
        """
        started = time.perf_counter()
        pipeline = self.pipeline
        mine = {p: progress(pipeline.positions, p) for p in partitions}
        best: dict[int, CheckpointHeader] = {}
        for header in self.headers():
            for p in partitions:
                if header.progress(p) > max(mine[p], best[p].progress(p) if p in best else 0):
                    best[p] = header
        by_file: dict[Path, set[int]] = {}
        for p, header in best.items():
            by_file.setdefault(header.path, set()).add(p)
        taken: dict[int, str] = {}
        for path, taken_partitions in by_file.items():
            donor = Pipeline(Engine())
            with _gc_paused():
                donor.restore(read_state(path))
                users = pipeline.import_partitions(donor.export_partitions(taken_partitions))
            self.users_adopted += users
            self.partitions_adopted += len(taken_partitions)
            for p in taken_partitions:
                taken[p] = path.name
            logger.info(
                "took over partitions %s from %s: %d users",
                sorted(taken_partitions),
                path.name,
                users,
            )
        held = set(pipeline.user_partitions.values()) | {p for _, p in pipeline.positions}
        self.users_dropped += pipeline.drop_partitions(held - partitions)
        self.last_adopt_seconds = time.perf_counter() - started
        return taken

    # ------------------------------------------------------------------ write
    @property
    def writing(self) -> bool:
        return self._writer is not None

    @property
    def current_interval(self) -> float:
        """Seconds from one checkpoint's start to the next: ``interval``, or longer when
        the last writer's CPU time divided by ``max_cpu_share`` is longer."""
        if self.max_cpu_share is None or self.last_cpu_seconds is None:
            return self.interval
        return max(self.interval, self.last_cpu_seconds / self.max_cpu_share)

    def due(self) -> bool:
        """Time for the next checkpoint, and none is being written."""
        return self._writer is None and self.clock() - self._last_started >= self.current_interval

    def start(self) -> Positions | None:
        """Begin writing a checkpoint of the state as it is now, in a child process.

        Call it only between records: the positions are copied now and must
        describe exactly the state the child sees. Returns the positions when the
        checkpoint was written at once (no ``os.fork``); else :meth:`poll` will.
        """
        if self._writer is not None:
            raise RuntimeError("a checkpoint is already being written")
        if self.before_write is not None:
            self.before_write()
        positions = dict(self.pipeline.positions)
        self._last_started = self.clock()
        if not hasattr(os, "fork"):
            return self._write_here(positions)
        started = time.perf_counter()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any cleanup
            code = 1
            try:
                _die_with_parent(parent)
                if self.writer_niceness:
                    with contextlib.suppress(OSError):  # lower priority is best effort
                        os.nice(self.writer_niceness)
                gc.disable()  # a child that exits after one pickle: no cycles worth finding
                self._write(positions, self.pipeline.snapshot())
                code = 0
            except BaseException:  # noqa: BLE001 - reported to the parent by the exit code
                traceback.print_exc()
            finally:
                os._exit(code)
        self._writer = _Writer(pid, positions, started)
        return None

    def poll(self) -> Positions | None:
        """The positions of a checkpoint that has just been written, else ``None``."""
        return self._reap(os.WNOHANG)

    def wait(self) -> Positions | None:
        """Block until a checkpoint being written is done; its positions, if it succeeded."""
        return self._reap(0)

    def _reap(self, options: int) -> Positions | None:
        writer = self._writer
        if writer is None:
            return None
        pid, status, usage = os.wait4(writer.pid, options)
        if pid == 0:  # still writing (WNOHANG)
            return None
        self._writer = None
        self.last_cpu_seconds = usage.ru_utime + usage.ru_stime
        if os.waitstatus_to_exitcode(status) != 0:
            self.failed += 1
            logger.error("checkpoint writer %d failed (status %d)", writer.pid, status)
            return None
        return self._finished(writer.positions, writer.started)

    async def write(self, poll_seconds: float = 0.02) -> Positions | None:
        """Write a checkpoint of the state as it is now and wait for it, without
        blocking the event loop (heartbeats go on during a long write).

        For stop and partition revocation. ``None`` if the writer failed.
        """
        await self._written(poll_seconds)  # one started earlier: let it finish first
        written = self.start()
        if written is not None:
            return written
        return await self._written(poll_seconds)

    async def _written(self, poll_seconds: float) -> Positions | None:
        """Wait, yielding to the event loop, for the writer running (if any); its positions."""
        while True:
            positions = self.poll()
            if self._writer is None:
                return positions
            await asyncio.sleep(poll_seconds)

    def write_now(self) -> Positions:
        """Write a checkpoint synchronously, in this process (benchmarks, doctests)."""
        self.wait()
        self._last_started = self.clock()
        if self.before_write is not None:
            self.before_write()
        return self._write_here(dict(self.pipeline.positions))

    def _write_here(self, positions: Positions) -> Positions:
        started = time.perf_counter()
        with _gc_paused():
            self._write(positions, self.pipeline.snapshot())
        return self._finished(positions, started)

    def _finished(self, positions: Positions, started: float) -> Positions:
        self.written += 1
        self.last_seconds = time.perf_counter() - started
        try:
            self.last_bytes = self.path.stat().st_size
        except FileNotFoundError:
            self.last_bytes = None
        return positions

    def _write(self, positions: Positions, data: bytes) -> None:
        """Atomically replace the checkpoint file (temp file, fsync, rename, fsync dir)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{self.path.name}.{os.getpid()}"
        with open(temporary, "wb") as file:
            file.write(_encode_header(self.name, positions))
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def stats(self) -> dict[str, object]:
        """JSON-ready figures for ``/stats/``."""
        return {
            "checkpoints_written": self.written,
            "checkpoints_failed": self.failed,
            "last_checkpoint_seconds": self.last_seconds,
            "last_checkpoint_cpu_seconds": self.last_cpu_seconds,
            "checkpoint_interval_seconds": self.current_interval,
            "last_checkpoint_bytes": self.last_bytes,
            "checkpoints_restored": self.restored,
            "restored_events": self.restored_events,
            "restore_seconds": self.restore_seconds,
            "partitions_adopted": self.partitions_adopted,
            "users_adopted": self.users_adopted,
            "users_dropped": self.users_dropped,
            "last_adopt_seconds": self.last_adopt_seconds,
        }
