"""SASL on a real broker: the worker and the commands log in, or fail at start-up in one line.

One broker of its own for this module (the session broker stays PLAINTEXT): a
``PLAINTEXT`` listener, and a ``SASL_PLAINTEXT`` one that accepts user ``encore``
with the ``PLAIN`` mechanism. The password has the characters a JAAS config must
escape, so the broker-side quoting is exercised too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.broker_check import BrokerUnavailable, check_broker
from stream.contracts import decode_recommendation_list
from stream.kafka_local import Listener, LocalKafka
from stream.processes import free_port, running_worker, start_worker, stop_process
from stream.settings import Settings

pytestmark = pytest.mark.broker

USER = "encore"
PASSWORD = 'pa"ss\\word; x=y'
WRONG_PASSWORD = "not-the-password"
PARTITIONS = 2


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(
        tmp_path_factory.mktemp("kafka-sasl"),
        extra_listeners=[Listener("SASL", "SASL_PLAINTEXT")],
        sasl_users={USER: PASSWORD, "someone-else": "other"},
        num_partitions=PARTITIONS,
    )
    broker.start(fresh=True)
    try:
        yield broker
    finally:
        broker.stop()


def _settings(broker: LocalKafka, password: str = PASSWORD, **overrides: str) -> Settings:
    return Settings(
        broker=broker.bootstrap_for("SASL"),
        security_protocol="SASL_PLAINTEXT",
        sasl_username=USER,
        sasl_password=password,
        **overrides,
    )


def _worker_env(broker: LocalKafka, tmp_path: Path, password: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "ENCORE_BROKER": broker.bootstrap_for("SASL"),
        "ENCORE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ENCORE_SASL_MECHANISM": "PLAIN",
        "ENCORE_SASL_USERNAME": USER,
        "ENCORE_SASL_PASSWORD": password,
        "ENCORE_TOPIC_PREFIX": f"t{suffix}-",
        "ENCORE_APP_ID": f"encore-sasl-{suffix}",
        "ENCORE_PARTITIONS": str(PARTITIONS),
        "ENCORE_DATA_DIR": str(tmp_path / "data"),
        "ENCORE_WEB_PORT": str(free_port()),
        "ENCORE_PUBLISH_INTERVAL_MS": "50",
    }


def _play(user: str, item: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "type": "play",
            "user_id": user,
            "item_id": item,
            "occurred_at": datetime.now(UTC).isoformat(),
            "ms_played": 150_000,
            "duration_ms": 200_000,
        }
    )


# -- the start-up check, in process ---------------------------------------------------


async def test_the_right_password_passes_the_check(sasl_broker: LocalKafka) -> None:
    await check_broker(_settings(sasl_broker), timeout=10)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"password": WRONG_PASSWORD},
            "refused the login of user 'encore' (SASL_PLAINTEXT, mechanism PLAIN): "
            "SaslAuthenticationFailed: Authentication failed: Invalid username or password; "
            "check ENCORE_SASL_USERNAME and ENCORE_SASL_PASSWORD",
        ),
        (
            {"sasl_mechanism": "SCRAM-SHA-256"},
            "refused the connection (SASL_PLAINTEXT, mechanism SCRAM-SHA-256, user 'encore'): "
            "UnsupportedSaslMechanismError",
        ),
    ],
)
async def test_a_refused_login_fails_at_once_with_kafkas_reason(
    sasl_broker: LocalKafka, settings: dict[str, str], expected: str
) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as raised:
        await check_broker(_settings(sasl_broker, **settings), timeout=20)
    assert time.monotonic() - started < 5, "a refused login is not retried"
    message = str(raised.value)
    assert message.startswith(f"Kafka at {sasl_broker.bootstrap_for('SASL')} ")
    assert expected in message
    assert "\n" not in message
    assert WRONG_PASSWORD not in message and PASSWORD not in message


async def test_plaintext_against_the_sasl_listener_is_reported_after_the_timeout(
    sasl_broker: LocalKafka,
) -> None:
    settings = Settings(broker=sasl_broker.bootstrap_for("SASL"))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"within 1 s: .*Connection at .* closed"):
        await check_broker(settings, timeout=1)
    assert 1 <= time.monotonic() - started < 5


# -- the worker, a separate process ---------------------------------------------------


async def test_worker_logs_in_processes_events_and_publishes_lists(
    sasl_broker: LocalKafka, tmp_path: Path
) -> None:
    env = _worker_env(sasl_broker, tmp_path, PASSWORD)
    settings = _settings(sasl_broker, topic_prefix=env["ENCORE_TOPIC_PREFIX"])
    users = {f"sasl-user-{n}": 2 + n for n in range(3)}  # user -> number of plays

    with running_worker(env, tmp_path / "worker.log"):
        producer = AIOKafkaProducer(**settings.aiokafka_options(), acks="all")
        await producer.start()
        try:
            for user, plays in users.items():
                for n in range(plays):
                    await producer.send(
                        settings.topic_name("plays"), _play(user, f"item-{n}"), key=user.encode()
                    )
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            settings.topic_name("recommendations"),
            **settings.aiokafka_options(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        latest: dict[str, int] = {}
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and latest != users:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        rec = decode_recommendation_list(record.value)
                        latest[rec.user_id] = rec.based_on_events
        finally:
            await consumer.stop()

    assert latest == users, "each user's latest list counts all of that user's events"
    log = (tmp_path / "worker.log").read_text()
    assert "SaslAuthenticationFailed" not in log


def test_worker_with_a_wrong_password_exits_at_once_naming_the_failure(
    sasl_broker: LocalKafka, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    started = time.monotonic()
    process = start_worker(_worker_env(sasl_broker, tmp_path, WRONG_PASSWORD), log_path)
    try:
        returncode = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop_process(process)
        pytest.fail(f"the worker still ran after 30 s:\n{log_path.read_text()[-3000:]}")
    elapsed = time.monotonic() - started
    log = log_path.read_text()
    assert returncode == 1, log
    expected = (
        f"encore worker: Kafka at {sasl_broker.bootstrap_for('SASL')} refused the login of "
        "user 'encore' (SASL_PLAINTEXT, mechanism PLAIN): SaslAuthenticationFailed: "
        "Authentication failed: Invalid username or password"
    )
    assert expected in log, log[-3000:]
    assert WRONG_PASSWORD not in log
    assert "Traceback" not in log  # one line, not a stack
    assert "Ready" not in log
    print(f"worker with a wrong password exited in {elapsed:.1f} s")


def test_tail_with_a_wrong_password_fails_in_one_line(
    sasl_broker: LocalKafka, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream", "tail", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **_worker_env(sasl_broker, tmp_path, WRONG_PASSWORD)},
    )
    assert result.returncode == 1
    assert "Error: Kafka at " in result.stderr
    assert "Invalid username or password" in result.stderr
    assert WRONG_PASSWORD not in result.stderr + result.stdout
