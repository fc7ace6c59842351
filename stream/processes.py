"""Running an Encore worker as a child process: the demo, the tests and the benchmark use this."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

#: Faust logs this once the worker has joined its group and resumed its partitions
#: (the label is the worker class, :class:`stream.app.EncoreWorker`).
WORKER_READY_LINE = b"[^EncoreWorker]: Ready"


class WorkerFailed(RuntimeError):
    """The worker exited or did not become ready; the message holds its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``encore worker`` with ``env`` added to this process's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream", "worker", "--loglevel", "info"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_until_ready(
    process: subprocess.Popen[bytes], log_path: Path, timeout: float = 90.0, *, since: int = 0
) -> None:
    """Block until the worker logs that it is ready (after byte ``since`` of its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkerFailed(f"worker exited with {process.returncode}:\n{_tail(log_path)}")
        if WORKER_READY_LINE in log_path.read_bytes()[since:]:
            return
        time.sleep(0.1)
    raise WorkerFailed(f"worker not ready after {timeout:.0f}s:\n{_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running_worker(
    env: Mapping[str, str], log_path: Path, timeout: float = 90.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A ready worker for the ``with`` block; stopped (gracefully if it can) afterwards."""
    process = start_worker(env, log_path)
    try:
        wait_until_ready(process, log_path, timeout)
        yield process
    finally:
        stop_process(process)


def _tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"
