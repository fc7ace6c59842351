"""Shared fixtures: one real Kafka broker per test session, isolated topics per test.

The broker is the project's own (``stream.kafka_local``), on free ports in a temp
dir, unless ENCORE_TEST_BROKER names one that already runs. It is never skipped:
without a broker the integration tests fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.kafka_local import LocalKafka
from stream.processes import free_port, running_worker

TEST_PARTITIONS = 4


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real broker for the whole session."""
    external = os.environ.get("ENCORE_TEST_BROKER")
    if external:
        yield external
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), num_partitions=TEST_PARTITIONS)
    broker.start(fresh=True)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@dataclass(frozen=True)
class WorkerEnv:
    """Where one test's worker lives: its own topics (by prefix), group and data dir."""

    bootstrap: str
    prefix: str
    env: dict[str, str]
    log_path: Path

    def topic(self, base_name: str) -> str:
        return f"{self.prefix}{base_name}"


@pytest.fixture
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> WorkerEnv:
    """Settings for a worker isolated from every other test (uuid-suffixed names)."""
    suffix = uuid.uuid4().hex[:10]
    prefix = f"t{suffix}-"
    env = {
        "ENCORE_BROKER": kafka_bootstrap,
        "ENCORE_TOPIC_PREFIX": prefix,
        "ENCORE_APP_ID": f"encore-test-{suffix}",
        "ENCORE_PARTITIONS": str(TEST_PARTITIONS),
        "ENCORE_DATA_DIR": str(tmp_path / "data"),
        "ENCORE_WEB_PORT": str(free_port()),
        "ENCORE_PUBLISH_INTERVAL_MS": "50",
    }
    return WorkerEnv(kafka_bootstrap, prefix, env, tmp_path / "worker.log")


@pytest.fixture
def worker(worker_env: WorkerEnv) -> Iterator[WorkerEnv]:
    """A running ``encore worker`` subprocess (ready: joined its group, partitions assigned)."""
    with running_worker(worker_env.env, worker_env.log_path):
        yield worker_env
