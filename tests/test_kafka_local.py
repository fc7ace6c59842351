"""Tests of the local Kafka broker tooling (stream/kafka_local.py).

Tests marked ``broker`` start real brokers (Java, jars from the cache, fetched on
first use) on ports picked by the OS in temporary directories. The others check
fetching with a stand-in ``mvn``, configuration, and the errors that must say
what is wrong without starting anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from stream import kafka_local
from stream.kafka_local import (
    KAFKA_VERSION,
    KafkaToolError,
    Listener,
    LocalKafka,
    PortInUseError,
    fetch_kafka,
    find_java,
    log4j2_version_for,
    pick_free_ports,
    render_properties,
    server_properties,
)

POM = Path(kafka_local.__file__).parent / "kafka" / "pom.xml"


# -- helpers ---------------------------------------------------------------------------


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def broker_pids(home: Path) -> list[int]:
    """Pids of every java process whose command line names this home's config."""
    config = os.fsencode(home.resolve() / "server.properties")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"kafka.Kafka" in argv and config in argv:
                pids.append(int(entry.name))
    return pids


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=500)
                values += [record.value for records in batches.values() for record in records]
        return values
    finally:
        await consumer.stop()


async def topic_names(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture
def stop_afterwards() -> Iterator[list[LocalKafka]]:
    """Brokers appended here are stopped even when the test fails half-way."""
    brokers: list[LocalKafka] = []
    yield brokers
    for broker in brokers:
        broker.stop()


@pytest.fixture(scope="module")
def running_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker started by another Python process that then exits, as the CLI does."""
    home = tmp_path_factory.mktemp("kafka-home")
    starter = (
        "import sys\n"
        "from stream.kafka_local import Listener, LocalKafka\n"
        "LocalKafka(sys.argv[1], extra_listeners=[Listener('EXTERNAL')]).start()\n"
    )
    # Captured output: the starter must not leave its pipes to the broker, or this hangs.
    started = subprocess.run(
        [sys.executable, "-c", starter, os.fspath(home)],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        pytest.fail(f"the starter process failed:\n{started.stderr}")
    broker = LocalKafka(home, extra_listeners=[Listener("EXTERNAL")])
    yield broker
    ports = broker.ports
    assert broker.stop() is True
    assert not any(accepts_connections(port) for port in ports.values())
    assert broker_pids(home) == []


# -- against real brokers --------------------------------------------------------------


@pytest.mark.broker
async def test_produce_and_consume_through_both_listeners(running_broker: LocalKafka) -> None:
    topic = f"test-{uuid.uuid4().hex}"
    await produce(running_broker.bootstrap, topic, [b"one", b"two"])
    received = await consume(running_broker.bootstrap_for("EXTERNAL"), topic, 2)
    assert received == [b"one", b"two"]
    assert running_broker.bootstrap != running_broker.bootstrap_for("EXTERNAL")


@pytest.mark.broker
def test_status_from_another_instance(running_broker: LocalKafka) -> None:
    # What the CLI does: a new object, same home, no ports given.
    observer = LocalKafka(running_broker.home)
    status = observer.status()
    assert status is not None and status.running
    assert broker_pids(running_broker.home_dir) == [status.pid]
    parent_pid = int(Path(f"/proc/{status.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert parent_pid != os.getpid()  # it outlived the process that started it
    assert status.bootstrap == running_broker.bootstrap == observer.bootstrap
    assert status.ports == running_broker.ports
    assert status.version == KAFKA_VERSION
    assert accepts_connections(status.ports["PLAINTEXT"])
    assert accepts_connections(status.ports["CONTROLLER"])


@pytest.mark.broker
def test_start_when_running_adopts_the_broker(running_broker: LocalKafka) -> None:
    pids_before = broker_pids(running_broker.home_dir)
    with LocalKafka(running_broker.home) as adopter:
        assert adopter.bootstrap == running_broker.bootstrap
    # Still one broker, and leaving the block did not stop what the block did not start.
    assert broker_pids(running_broker.home_dir) == pids_before
    status = running_broker.status()
    assert status is not None and status.running
    with pytest.raises(KafkaToolError, match="stop"):
        LocalKafka(running_broker.home).start(fresh=True)


@pytest.mark.broker
async def test_data_survives_a_restart_but_not_a_fresh_start(
    tmp_path: Path, stop_afterwards: list[LocalKafka]
) -> None:
    # One story, to keep broker start-ups (5-10 s each here) few.
    home, topic = tmp_path / "kafka", f"test-{uuid.uuid4().hex}"
    first = LocalKafka(home)
    stop_afterwards.append(first)
    with first:
        first_status = first.status()
        assert first_status is not None
        await produce(first.bootstrap, topic, [b"before the restart"])
    assert not process_exists(first_status.pid)
    assert not accepts_connections(first_status.ports["PLAINTEXT"])
    assert LocalKafka(home).status() is None
    assert not (home / "broker.json").exists()

    second = LocalKafka(home)  # no ports given: those of the stored data are reused
    stop_afterwards.append(second)
    second.start()
    assert second.ports == first_status.ports
    assert await consume(second.bootstrap, topic, 1) == [b"before the restart"]
    second_status = second.status()
    assert second_status is not None and second_status.pid != first_status.pid

    assert second.kill() is True
    assert not process_exists(second_status.pid)
    assert second.status() is None
    assert second.kill() is False  # nothing left to kill

    second.start(fresh=True)
    assert topic not in await topic_names(second.bootstrap)


@pytest.mark.broker
def test_broker_dying_at_start_up_reports_its_log(tmp_path: Path) -> None:
    # The JVM refuses this heap before Kafka starts; formatting has its own heap.
    broker = LocalKafka(tmp_path / "kafka", heap_options="-Xmx1m")
    with pytest.raises(KafkaToolError, match="exited during start-up") as raised:
        broker.start()
    log_tail = (tmp_path / "kafka" / "kafka.out").read_text().strip().splitlines()[-3:]
    assert log_tail and all(line in str(raised.value) for line in log_tail)
    assert broker.status() is None
    assert broker_pids(tmp_path / "kafka") == []


# -- errors that must be clear, without a broker --------------------------------------


@pytest.mark.parametrize("listener", ["PLAINTEXT", "CONTROLLER"])
def test_taken_port_is_reported(tmp_path: Path, listener: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        other = pick_free_ports(1, exclude=[taken])[0]
        ports = {"port": taken, "controller_port": other}
        if listener == "CONTROLLER":
            ports = {"port": other, "controller_port": taken}
        broker = LocalKafka(tmp_path, **ports)
        with pytest.raises(PortInUseError, match=f"port {taken} .* already in use") as raised:
            broker.start()
    assert (raised.value.port, raised.value.listener) == (taken, listener)
    assert broker.status() is None


def test_missing_java_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", os.fspath(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(KafkaToolError, match="java was not found on PATH.*install a Java 17"):
        LocalKafka(tmp_path / "kafka").start()
    with pytest.raises(KafkaToolError, match=f"JAVA_HOME={re.escape(str(empty))} has no"):
        LocalKafka(tmp_path / "kafka", java_home=empty).start()
    with pytest.raises(KafkaToolError, match="java was not found"):
        fetch_kafka(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "kafka" / "broker.json").exists()


def test_missing_maven_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java_only = tmp_path / "bin"
    java_only.mkdir()
    (java_only / "java").symlink_to(find_java())
    monkeypatch.setenv("PATH", os.fspath(java_only))
    with pytest.raises(KafkaToolError, match="mvn was not found on PATH.*install Apache Maven"):
        fetch_kafka(cache_dir=tmp_path / "cache")


# -- fetching, with a stand-in mvn -----------------------------------------------------

FAKE_MVN = """#!/bin/sh
# Stand-in for mvn dependency:copy-dependencies: records its arguments, writes jars.
printf '%s\\n' "$*" >> "$FAKE_MVN_CALLS"
for arg; do
  case "$arg" in
    -DoutputDirectory=*) out="${arg#*=}" ;;
    -Dkafka.version=*) version="${arg#*=}" ;;
  esac
done
mkdir -p "$out"
echo jar > "$out/kafka-clients-$version.jar"
sleep "${FAKE_MVN_SLEEP:-0}"
if [ -n "$FAKE_MVN_FAIL" ]; then
  i=1
  while [ $i -le 50 ]; do printf '[ERROR] fake maven line %02d\\n' $i; i=$((i + 1)); done
  exit 1
fi
echo jar > "$out/kafka_2.13-$version.jar"
"""


@pytest.fixture
def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a stand-in ``mvn`` first on PATH; returns the file its calls are logged to."""
    bin_dir, calls = tmp_path / "fake-bin", tmp_path / "mvn-calls.txt"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN)
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MVN_CALLS", os.fspath(calls))
    return calls


def maven_calls(calls: Path) -> list[str]:
    return calls.read_text().splitlines()


def test_fetch_is_cached_per_version(tmp_path: Path, fake_maven: Path) -> None:
    cache = tmp_path / "cache"
    lib_dir = fetch_kafka("4.1.1", cache)
    assert lib_dir == cache / "kafka-4.1.1" / "lib"
    assert (lib_dir / "kafka_2.13-4.1.1.jar").is_file()
    stamp = json.loads((cache / "kafka-4.1.1" / "stamp.json").read_text())
    assert stamp["kafka_version"] == "4.1.1"
    assert stamp["log4j2_version"] == log4j2_version_for("4.1.1")
    assert stamp["jars"] == sorted(jar.name for jar in lib_dir.iterdir())
    [call] = maven_calls(fake_maven)
    assert "-Dkafka.version=4.1.1" in call.split()
    assert f"-Dlog4j2.version={log4j2_version_for('4.1.1')}" in call.split()

    assert fetch_kafka("4.1.1", cache) == lib_dir
    assert len(maven_calls(fake_maven)) == 1

    other = fetch_kafka("4.2.0", cache)
    assert other == cache / "kafka-4.2.0" / "lib" and other != lib_dir
    assert f"-Dlog4j2.version={log4j2_version_for('4.2.0')}" in maven_calls(fake_maven)[1]
    assert sorted(path.name for path in lib_dir.iterdir()) == stamp["jars"]
    assert not list(cache.glob(".tmp-*"))


def test_outdated_stamp_is_fetched_again(tmp_path: Path, fake_maven: Path) -> None:
    cache = tmp_path / "cache"
    fetch_kafka("4.1.1", cache)
    stamp_path = cache / "kafka-4.1.1" / "stamp.json"
    stamp = json.loads(stamp_path.read_text())
    # As if the packaged pom had changed since this cache was filled.
    stamp_path.write_text(json.dumps({**stamp, "pom_sha256": "0" * 64}))
    fetch_kafka("4.1.1", cache)
    assert len(maven_calls(fake_maven)) == 2
    assert json.loads(stamp_path.read_text())["pom_sha256"] == stamp["pom_sha256"]
    assert sorted(path.name for path in cache.iterdir()) == ["kafka-4.1.1", "kafka-4.1.1.lock"]


def test_failed_fetch_leaves_no_cache(
    tmp_path: Path, fake_maven: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    cache = tmp_path / "cache"
    with pytest.raises(KafkaToolError, match="mvn failed") as raised:
        fetch_kafka("4.1.1", cache)
    message = str(raised.value)
    assert "[ERROR] fake maven line 50" in message  # the tail of the output...
    assert "[ERROR] fake maven line 01" not in message  # ...not all of it
    assert [path.name for path in cache.iterdir()] == ["kafka-4.1.1.lock"]

    monkeypatch.delenv("FAKE_MVN_FAIL")
    assert (fetch_kafka("4.1.1", cache) / "kafka_2.13-4.1.1.jar").is_file()


def test_concurrent_fetches_run_maven_once(
    tmp_path: Path, fake_maven: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_SLEEP", "0.5")
    cache, results = tmp_path / "cache", []
    threads = [
        threading.Thread(target=lambda: results.append(fetch_kafka("4.1.1", cache)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert len(maven_calls(fake_maven)) == 1


# -- configuration ---------------------------------------------------------------------


def test_pom_defaults_agree_with_the_module() -> None:
    pom = POM.read_text()
    kafka = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    log4j2 = re.search(r"<log4j2.version>(.+?)</log4j2.version>", pom)
    assert kafka and log4j2
    assert kafka.group(1) == KAFKA_VERSION
    assert log4j2_version_for(kafka.group(1)) == log4j2.group(1)
    with pytest.raises(KafkaToolError, match="3.9.1"):
        log4j2_version_for("3.9.1")


def test_server_properties_layout() -> None:
    ports = {"PLAINTEXT": 1001, "CONTROLLER": 1002, "SASL": 1003}
    properties = server_properties(
        "/data",
        ports,
        security_protocols={"SASL": "SASL_PLAINTEXT"},
        num_partitions=8,
        extra_properties={"auto.create.topics.enable": "false", "sasl.enabled.mechanisms": "PLAIN"},
    )
    listeners = dict(item.split("://") for item in properties["listeners"].split(","))
    assert listeners == {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    advertised = properties["advertised.listeners"].split(",")
    assert advertised[0] == "PLAINTEXT://127.0.0.1:1001"
    assert not any(item.startswith("CONTROLLER") for item in advertised)
    protocols = dict(
        item.split(":") for item in properties["listener.security.protocol.map"].split(",")
    )
    assert protocols == {
        "PLAINTEXT": "PLAINTEXT",
        "CONTROLLER": "PLAINTEXT",
        "SASL": "SASL_PLAINTEXT",
    }
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:1002"
    assert properties["num.partitions"] == "8"
    assert properties["auto.create.topics.enable"] == "false"  # extras win
    assert properties["sasl.enabled.mechanisms"] == "PLAIN"
    with pytest.raises(ValueError, match="listeners"):
        server_properties("/data", ports, extra_properties={"listeners": "PLAINTEXT://:9092"})


@pytest.mark.parametrize(
    "arguments",
    [
        {"port": 5000, "controller_port": 5000},
        {"extra_listeners": [Listener("CONTROLLER")]},
        {"extra_listeners": [Listener("A"), Listener("A")]},
        {"extra_listeners": [Listener("lower")]},
        {"extra_listeners": [Listener("X", "KERBEROS")]},
        {"extra_properties": {"log.dirs": "/elsewhere"}},
        {"num_partitions": 0},
    ],
)
def test_bad_arguments_fail_at_construction(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(ValueError):
        LocalKafka(tmp_path, **arguments)


def test_rendered_properties_read_back_by_java(tmp_path: Path) -> None:
    tricky = {
        "sasl.jaas.config": 'PlainLoginModule required username="u" password="p=1;2";',
        "path": "C:\\kafka\\data",
        "spaced": "  leading spaces, trailing ",
        "comment.like": "#not a comment",
        "multi": "line one\nline two\ttab",
        "unicode": "héllo wörld €",
        "odd key=with:colon space": "value",
    }
    properties_file = tmp_path / "tricky.properties"
    properties_file.write_text(render_properties(tricky), encoding="latin-1")
    # java.util.Properties itself reads the file back (single-file source launch).
    dumper = tmp_path / "Dump.java"
    dumper.write_text(
        "import java.io.*; import java.util.*;\n"
        "public class Dump { public static void main(String[] a) throws Exception {\n"
        "  Properties p = new Properties(); p.load(new FileInputStream(a[0]));\n"
        "  for (String k : p.stringPropertyNames()) System.out.println(hex(k) + ' ' + "
        "hex(p.getProperty(k))); }\n"
        "  static String hex(String s) { StringBuilder b = new StringBuilder();\n"
        '    for (char c : s.toCharArray()) b.append(String.format("%04x", (int) c));\n'
        "    return b.toString(); } }\n"
    )
    output = subprocess.run(
        [os.fspath(find_java()), os.fspath(dumper), os.fspath(properties_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    def unhex(text: str) -> str:
        return "".join(chr(int(text[i : i + 4], 16)) for i in range(0, len(text), 4))

    read_back = dict(tuple(map(unhex, line.split(" "))) for line in output.splitlines())
    assert read_back == tricky


def test_sasl_users_configure_plain_logins_on_the_sasl_listeners_only() -> None:
    ports = {"PLAINTEXT": 1001, "CONTROLLER": 1002, "SASL": 1003, "EXTERNAL": 1004}
    properties = server_properties(
        "/data",
        ports,
        security_protocols={"SASL": "SASL_PLAINTEXT"},
        sasl_users={"encore": "s3cret", "other": 'q"\\'},
    )
    assert properties["listener.name.sasl.sasl.enabled.mechanisms"] == "PLAIN"
    assert properties["listener.name.sasl.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'user_encore="s3cret" user_other="q\\"\\\\";'
    )
    per_listener = {key.split(".")[2] for key in properties if key.startswith("listener.name.")}
    assert per_listener == {"sasl"}  # PLAINTEXT, CONTROLLER and EXTERNAL stay open
    assert "sasl.enabled.mechanisms" not in properties
    with pytest.raises(ValueError, match="SASL_PLAINTEXT or SASL_SSL listener"):
        server_properties("/data", ports, sasl_users={"encore": "s3cret"})


@pytest.mark.parametrize(
    "arguments",
    [
        {"sasl_users": {"encore": "s3cret"}},  # no SASL listener
        {
            "extra_listeners": [Listener("SASL", "SASL_PLAINTEXT")],
            "sasl_users": {'bad" name': "s3cret"},
        },
    ],
)
def test_bad_sasl_users_fail_at_construction(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(ValueError, match="SASL"):
        LocalKafka(tmp_path, **arguments)
