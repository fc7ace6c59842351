"""A real single-node Apache Kafka broker (KRaft) for tests, the demo and the CLI.

The broker runs from the jars Maven Central publishes, so a machine needs only a
Java 17+ runtime and Maven (no Docker, no Apache download mirror):

* :func:`fetch_kafka` resolves ``org.apache.kafka:kafka_2.13`` plus a log4j2
  backend with ``mvn dependency:copy-dependencies`` into a cache keyed by the
  Kafka version (``~/.cache/encore/kafka/kafka-<version>/lib``), once.
* :class:`LocalKafka` writes ``server.properties`` into a data directory (its
  ``home``), formats the storage, starts ``kafka.Kafka`` detached on
  ``127.0.0.1`` and records ``<home>/broker.json`` so that another process (the
  CLI) can ask for its status or stop it.

Files under ``home``::

    server.properties   rendered on every start
    log4j2.properties   copied from the package on every start
    data/               log.dirs: KRaft metadata and topic data
    storage.json        ports and cluster id of the formatted storage (kept by stop)
    broker.json         pid, ports, version while a broker runs (removed by stop)
    kafka.out           broker stdout+stderr; the previous run's is kafka.out.1

Nothing here needs a running broker to be imported or configured:

>>> import tempfile
>>> broker = LocalKafka(tempfile.mkdtemp(), port=19092, controller_port=19093)
>>> broker.bootstrap
'127.0.0.1:19092'
>>> broker.status() is None  # nothing started in that home
True
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

__all__ = [
    "DEFAULT_HEAP_OPTIONS",
    "KAFKA_VERSION",
    "LOOPBACK",
    "BrokerStatus",
    "KafkaToolError",
    "Listener",
    "LocalKafka",
    "PortInUseError",
    "default_cache_dir",
    "fetch_kafka",
    "find_java",
    "find_maven",
    "log4j2_version_for",
    "pick_free_ports",
    "render_properties",
    "sasl_plain_properties",
    "server_properties",
]

KAFKA_VERSION: Final = "4.1.1"
LOOPBACK: Final = "127.0.0.1"
DEFAULT_HEAP_OPTIONS: Final = ("-Xms256m", "-Xmx512m")
BROKER_LISTENER: Final = "PLAINTEXT"
CONTROLLER_LISTENER: Final = "CONTROLLER"

# The log4j2 release each Kafka release builds with (its gradle/dependencies.gradle);
# the same table is in the comment of stream/kafka/pom.xml.
_LOG4J2_FOR_KAFKA: Final[Mapping[str, str]] = {
    "4.0.0": "2.24.3",
    "4.0.1": "2.24.3",
    "4.1.0": "2.24.3",
    "4.1.1": "2.24.3",
    "4.0.2": "2.25.3",
    "4.1.2": "2.25.3",
    "4.2.0": "2.25.3",
    "4.2.1": "2.25.4",
}
_LOG4J2_FOR_KAFKA_SERIES: Final[Mapping[str, str]] = {"4.3": "2.25.4"}

# Keys the broker layout depends on; they are derived from the constructor arguments.
_OWNED_PROPERTIES: Final = frozenset(
    {
        "process.roles",
        "node.id",
        "controller.quorum.voters",
        "listeners",
        "advertised.listeners",
        "inter.broker.listener.name",
        "controller.listener.names",
        "listener.security.protocol.map",
        "log.dirs",
        "num.partitions",
    }
)
_SECURITY_PROTOCOLS: Final = frozenset({"PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"})
_LISTENER_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]*")
_SASL_USER_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")

_LOG_TAIL_LINES: Final = 40
_MAVEN_INSTALL_HINT: Final = (
    "install Apache Maven 3.6+ (Debian/Ubuntu: `apt-get install maven`); it is needed "
    "once per Kafka version to download the broker jars from Maven Central"
)
_JAVA_INSTALL_HINT: Final = (
    "install a Java 17+ runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) "
    "or set JAVA_HOME to one"
)


class KafkaToolError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


class PortInUseError(KafkaToolError):
    """A port the broker should listen on is taken on ``127.0.0.1``.

    Parameters
    ----------
    port
        The port that is taken.
    listener
        Which listener wanted it (``"PLAINTEXT"``, ``"CONTROLLER"``, ...).
    """

    def __init__(self, port: int, listener: str) -> None:
        self.port = port
        self.listener = listener
        super().__init__(
            f"port {port} on {LOOPBACK} (wanted by the {listener} listener) is already in "
            "use by another program or broker: stop it, or choose another port "
            "(leave the port unset to let the OS pick a free one)"
        )


@dataclass(frozen=True, slots=True)
class Listener:
    """An additional listener on ``127.0.0.1``, next to ``PLAINTEXT`` and ``CONTROLLER``.

    Its security settings (SASL mechanisms, JAAS config, ...) go into
    ``LocalKafka(extra_properties=...)``, e.g. under ``listener.name.<name lower>.``.

    Parameters
    ----------
    name
        Upper-case listener name, e.g. ``"SASL"``.
    security_protocol
        ``PLAINTEXT``, ``SASL_PLAINTEXT``, ``SSL`` or ``SASL_SSL``.
    port
        Fixed port, or ``None`` for a free one picked by the OS at the first start.

    Examples
    --------
    >>> Listener("SASL", "SASL_PLAINTEXT")
    Listener(name='SASL', security_protocol='SASL_PLAINTEXT', port=None)
    """

    name: str
    security_protocol: str = "PLAINTEXT"
    port: int | None = None


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``<home>/broker.json`` says about a broker, checked against reality.

    ``running`` is true only when the recorded process is alive and answers Kafka
    requests on its ``PLAINTEXT`` port; a record whose process died (a crash,
    ``kill -9``) reads as ``running=False``.
    """

    running: bool
    pid: int
    bootstrap: str
    ports: Mapping[str, int]
    version: str
    started_at: datetime
    home: Path


def default_cache_dir() -> Path:
    """Where fetched jars are kept unless told otherwise: ``~/.cache/encore/kafka``.

    Examples
    --------
    >>> default_cache_dir().parts[-3:]
    ('.cache', 'encore', 'kafka')
    """
    return Path.home() / ".cache" / "encore" / "kafka"


def log4j2_version_for(kafka_version: str) -> str:
    """The log4j2 release a Kafka release is built with (its logging backend).

    Parameters
    ----------
    kafka_version
        A Kafka 4.x release, e.g. ``"4.1.1"``.

    Returns
    -------
    str
        The log4j2 version to fetch alongside.

    Raises
    ------
    KafkaToolError
        For a release the table does not know (Kafka 3.x logs through reload4j
        and needs another pom).

    Examples
    --------
    >>> log4j2_version_for("4.1.1")
    '2.24.3'
    >>> log4j2_version_for("4.3.0")
    '2.25.4'
    """
    if kafka_version in _LOG4J2_FOR_KAFKA:
        return _LOG4J2_FOR_KAFKA[kafka_version]
    series = ".".join(kafka_version.split(".")[:2])
    if series in _LOG4J2_FOR_KAFKA_SERIES:
        return _LOG4J2_FOR_KAFKA_SERIES[series]
    known = ", ".join([*_LOG4J2_FOR_KAFKA, *(f"{s}.x" for s in _LOG4J2_FOR_KAFKA_SERIES)])
    raise KafkaToolError(
        f"no log4j2 version known for Kafka {kafka_version} (known: {known}); pass "
        "log4j2_version= explicitly, from that release's gradle/dependencies.gradle"
    )


def find_java(java_home: str | os.PathLike[str] | None = None) -> Path:
    """The ``java`` executable: from ``java_home``, else ``$JAVA_HOME``, else ``PATH``.

    A ``JAVA_HOME`` without ``bin/java`` is an error rather than a silent fallback
    to ``PATH``, so a broken setting is noticed.

    Parameters
    ----------
    java_home
        A Java installation directory; ``None`` reads the ``JAVA_HOME`` variable.

    Returns
    -------
    Path
        Path of the executable.

    Raises
    ------
    KafkaToolError
        When no usable ``java`` is found; the message says what to install.

    Examples
    --------
    >>> find_java().name
    'java'
    """
    home = os.fspath(java_home) if java_home is not None else os.environ.get("JAVA_HOME", "")
    if home:
        java = Path(home) / "bin" / "java"
        if java.is_file() and os.access(java, os.X_OK):
            return java
        raise KafkaToolError(f"JAVA_HOME={home} has no executable bin/java: {_JAVA_INSTALL_HINT}")
    found = shutil.which("java")
    if found is None:
        raise KafkaToolError(
            f"java was not found on PATH and JAVA_HOME is unset: {_JAVA_INSTALL_HINT}"
        )
    return Path(found)


def find_maven() -> Path:
    """The ``mvn`` executable on ``PATH``.

    Raises
    ------
    KafkaToolError
        When Maven is missing; the message says what to install.

    Examples
    --------
    >>> find_maven().name
    'mvn'
    """
    found = shutil.which("mvn")
    if found is None:
        raise KafkaToolError(f"mvn was not found on PATH: {_MAVEN_INSTALL_HINT}")
    return Path(found)


def _packaged_file(name: str) -> bytes:
    return (resources.files("stream") / "kafka" / name).read_bytes()


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Serialise processes (pytest workers, two CLI calls) over one cache or home."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _cached_lib_dir(
    version_dir: Path, kafka_version: str, log4j2_version: str, pom_sha256: str
) -> Path | None:
    try:
        stamp = json.loads((version_dir / "stamp.json").read_text())
    except (OSError, ValueError):
        return None
    lib_dir = version_dir / "lib"
    fetched = (stamp.get("kafka_version"), stamp.get("log4j2_version"), stamp.get("pom_sha256"))
    if fetched != (kafka_version, log4j2_version, pom_sha256):
        return None
    if not (lib_dir / f"kafka_2.13-{kafka_version}.jar").is_file():
        return None
    return lib_dir


def fetch_kafka(
    version: str = KAFKA_VERSION,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    log4j2_version: str | None = None,
    java_home: str | os.PathLike[str] | None = None,
    maven_args: Sequence[str] = (),
    timeout: float = 900.0,
) -> Path:
    """Download the broker jars of one Kafka release once; return their directory.

    The jars land in ``<cache_dir>/kafka-<version>/lib`` next to a ``stamp.json``
    saying what was fetched (Kafka and log4j2 versions, hash of the pom, jar
    names). Maven writes into a temporary directory that is renamed into place
    only when complete, so an interrupted fetch never leaves a half cache. A
    valid cache is recognised from its stamp without starting Maven; a change of
    the packaged pom invalidates it.

    Parameters
    ----------
    version
        Kafka release (``org.apache.kafka:kafka_2.13``).
    cache_dir
        Cache root; ``None`` means :func:`default_cache_dir`.
    log4j2_version
        Override of :func:`log4j2_version_for`.
    java_home
        Java for Maven; see :func:`find_java`.
    maven_args
        Extra ``mvn`` arguments, e.g. ``("-s", "settings.xml")`` for a mirror or
        ``("-o",)`` offline.
    timeout
        Seconds Maven may take.

    Returns
    -------
    Path
        The ``lib`` directory holding the jars.

    Raises
    ------
    KafkaToolError
        If java or mvn is missing, or Maven fails (with the tail of its output).

    Examples
    --------
    ``fetch_kafka()`` returns ``~/.cache/encore/kafka/kafka-4.1.1/lib``. Versions
    outside the log4j2 table are refused before anything is downloaded:

    >>> fetch_kafka("3.9.1", "/nonexistent")
    Traceback (most recent call last):
    ...
    stream.kafka_local.KafkaToolError: no log4j2 version known for Kafka 3.9.1 ...
    """
    log4j2_version = log4j2_version or log4j2_version_for(version)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    version_dir = cache_root / f"kafka-{version}"
    pom = _packaged_file("pom.xml")
    pom_sha256 = hashlib.sha256(pom).hexdigest()

    lib_dir = _cached_lib_dir(version_dir, version, log4j2_version, pom_sha256)
    if lib_dir is not None:
        return lib_dir

    find_java(java_home)  # Maven needs it too; say so before Maven does, less clearly
    maven = find_maven()
    with _exclusive_lock(cache_root / f"kafka-{version}.lock"):
        # Another process may have finished the same fetch while we waited.
        lib_dir = _cached_lib_dir(version_dir, version, log4j2_version, pom_sha256)
        if lib_dir is not None:
            return lib_dir
        # Leftovers of fetches that were killed; only lock holders create them.
        for leftover in cache_root.glob(f".tmp-kafka-{version}-*"):
            shutil.rmtree(leftover, ignore_errors=True)

        staging = Path(tempfile.mkdtemp(prefix=f".tmp-kafka-{version}-", dir=cache_root))
        try:
            _run_maven(maven, java_home, staging, pom, version, log4j2_version, maven_args, timeout)
            jars = sorted(jar.name for jar in (staging / "lib").glob("*.jar"))
            if f"kafka_2.13-{version}.jar" not in jars:
                raise KafkaToolError(
                    f"mvn succeeded but kafka_2.13-{version}.jar is missing from {staging / 'lib'}"
                )
            stamp = {
                "kafka_version": version,
                "log4j2_version": log4j2_version,
                "pom_sha256": pom_sha256,
                "fetched_at": datetime.now(UTC).isoformat(),
                "jars": jars,
            }
            (staging / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
            staging.chmod(0o755)  # mkdtemp makes it private; the cache is not
            if version_dir.exists():
                # An outdated cache (other pom): swap it out, then delete it.
                outdated = Path(tempfile.mkdtemp(prefix=f".tmp-kafka-{version}-", dir=cache_root))
                os.replace(version_dir, outdated / "old")
            os.replace(staging, version_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            for leftover in cache_root.glob(f".tmp-kafka-{version}-*"):
                shutil.rmtree(leftover, ignore_errors=True)
    return version_dir / "lib"


def _run_maven(
    maven: Path,
    java_home: str | os.PathLike[str] | None,
    staging: Path,
    pom: bytes,
    version: str,
    log4j2_version: str,
    maven_args: Sequence[str],
    timeout: float,
) -> None:
    (staging / "pom.xml").write_bytes(pom)
    command = [
        os.fspath(maven),
        "-q",
        "-B",
        "-f",
        os.fspath(staging / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging / 'lib'}",
        f"-Dkafka.version={version}",
        f"-Dlog4j2.version={log4j2_version}",
        *maven_args,
    ]
    env = dict(os.environ)
    if java_home is not None:
        env["JAVA_HOME"] = os.fspath(java_home)  # the same Java as the broker
    try:
        completed = subprocess.run(
            command,
            cwd=staging,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.output if isinstance(error.output, str) else ""
        raise KafkaToolError(
            f"mvn did not finish within {timeout:.0f} s fetching Kafka {version}; "
            f"last lines:\n{_tail(output)}"
        ) from error
    if completed.returncode != 0:
        raise KafkaToolError(
            f"mvn failed (exit code {completed.returncode}) fetching Kafka {version} with "
            f"log4j2 {log4j2_version} from Maven Central; last lines:\n{_tail(completed.stdout)}"
        )


def pick_free_ports(count: int, exclude: Sequence[int] = ()) -> list[int]:
    """Ports on ``127.0.0.1`` that are free now, distinct, chosen by the OS.

    Another program may take one before it is used; :class:`LocalKafka` reports
    that as :class:`PortInUseError`.

    Parameters
    ----------
    count
        How many ports.
    exclude
        Ports not to return (already promised to someone else).

    Examples
    --------
    >>> first, second = pick_free_ports(2)
    >>> first != second and 0 < first < 65536
    True
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)  # kept bound until the end so the OS never repeats it
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
            if port not in exclude:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR like the JVM's server sockets: TIME_WAIT leftovers of a broker
    # that just stopped do not count as "taken", a bound or listening socket does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_until_closed(ports: Iterable[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while _accepts_connections(port) and time.monotonic() < deadline:
            time.sleep(0.05)


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by peer")
        data += chunk
    return data


def _kafka_answers(port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka broker answers an ApiVersions request on ``127.0.0.1:port``.

    Stronger than "the port accepts": it proves the request handlers run and that
    the listener is Kafka, not some program that grabbed the port meanwhile.
    """
    correlation_id = 0x0E4C0BE
    client_id = b"encore-kafka-local"
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation id, client id.
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
            conn.sendall(struct.pack(">i", len(header)) + header)
            (size,) = struct.unpack(">i", _recv_exactly(conn, 4))
            # Response: correlation id, then the error code (0, or UNSUPPORTED_VERSION
            # with the supported range: both are a working broker).
            (answered_id,) = struct.unpack(">i", _recv_exactly(conn, 4))
    except OSError:
        return False
    return size >= 6 and answered_id == correlation_id


def _escape_property(text: str, *, is_key: bool) -> str:
    """Escape for java.util.Properties.load, which reads ISO-8859-1."""
    escaped = []
    for index, char in enumerate(text):
        if char == "\\":
            escaped.append("\\\\")
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\r":
            escaped.append("\\r")
        elif char == "\t":
            escaped.append("\\t")
        elif char in "=: #!" and (is_key or (char in " #!" and index == 0)):
            escaped.append("\\" + char)
        elif not " " <= char <= "~":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return "".join(escaped)


def _owned_properties_message(owned: Sequence[str]) -> str:
    return (
        f"extra_properties may not set {list(owned)}: they follow from port, controller_port, "
        "extra_listeners, num_partitions and home"
    )


def server_properties(
    data_dir: str | os.PathLike[str],
    ports: Mapping[str, int],
    *,
    security_protocols: Mapping[str, str] | None = None,
    num_partitions: int = 1,
    sasl_users: Mapping[str, str] | None = None,
    extra_properties: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The broker configuration: one node that is its own single-voter controller.

    Every internal topic has replication factor 1, consumer groups start without
    the 3 s rebalance delay, records with future timestamps are accepted (the 4.x
    default rejects those over 1 h ahead) and thread counts suit a small machine.

    Parameters
    ----------
    data_dir
        ``log.dirs`` (topic data and the KRaft metadata log).
    ports
        Listener name -> port; must hold ``PLAINTEXT`` (clients and inter-broker)
        and ``CONTROLLER``. Other names are extra client listeners.
    security_protocols
        Listener name -> security protocol for the extra listeners (default
        ``PLAINTEXT``).
    num_partitions
        Partitions of auto-created topics.
    sasl_users
        User name -> password accepted with the ``PLAIN`` mechanism on every
        ``SASL_PLAINTEXT``/``SASL_SSL`` listener (see :func:`sasl_plain_properties`).
    extra_properties
        Added last; may override any default except the listener, quorum and
        storage layout keys, which follow from the other arguments.

    Returns
    -------
    dict[str, str]
        Property name -> value.

    Examples
    --------
    >>> props = server_properties("/data", {"PLAINTEXT": 19092, "CONTROLLER": 19093},
    ...                           extra_properties={"log.retention.ms": "60000"})
    >>> props["listeners"]
    'PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093'
    >>> props["controller.quorum.voters"], props["log.retention.ms"]
    ('1@127.0.0.1:19093', '60000')
    """
    security_protocols = security_protocols or {}
    extra_properties = extra_properties or {}
    owned = sorted(_OWNED_PROPERTIES.intersection(extra_properties))
    if owned:
        raise ValueError(_owned_properties_message(owned))
    missing = {BROKER_LISTENER, CONTROLLER_LISTENER} - set(ports)
    if missing:
        raise ValueError(f"ports lacks {sorted(missing)}")
    client_listeners = [name for name in ports if name != CONTROLLER_LISTENER]
    # PLAINTEXT first so it is the listener clients see first.
    client_listeners.sort(key=lambda name: name != BROKER_LISTENER)
    all_listeners = [BROKER_LISTENER, CONTROLLER_LISTENER, *client_listeners[1:]]
    protocol_map = {name: security_protocols.get(name, "PLAINTEXT") for name in all_listeners}
    protocol_map[BROKER_LISTENER] = protocol_map[CONTROLLER_LISTENER] = "PLAINTEXT"

    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static one-voter quorum; storage is formatted without --standalone.
        "controller.quorum.voters": f"1@{LOOPBACK}:{ports[CONTROLLER_LISTENER]}",
        "listeners": ",".join(f"{name}://{LOOPBACK}:{ports[name]}" for name in all_listeners),
        "advertised.listeners": ",".join(
            f"{name}://{LOOPBACK}:{ports[name]}" for name in client_listeners
        ),
        "inter.broker.listener.name": BROKER_LISTENER,
        "controller.listener.names": CONTROLLER_LISTENER,
        "listener.security.protocol.map": ",".join(
            f"{name}:{protocol}" for name, protocol in protocol_map.items()
        ),
        "log.dirs": os.fspath(data_dir),
        # A single node: every internal topic must have replication factor 1.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "num.partitions": str(num_partitions),
        # Kafka 4 rejects records stamped more than 1 h ahead; tests replay such events.
        "log.message.timestamp.after.max.ms": "9223372036854775807",
        # A 2-core machine: fewer threads and a smaller log-cleaner buffer.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.dedupe.buffer.size": "33554432",
    }
    if sasl_users:
        sasl_listeners = [name for name in client_listeners if "SASL" in protocol_map[name]]
        if not sasl_listeners:
            raise ValueError("sasl_users needs a SASL_PLAINTEXT or SASL_SSL listener")
        for name in sasl_listeners:
            properties.update(sasl_plain_properties(name, sasl_users))
    properties.update(extra_properties)
    return properties


def sasl_plain_properties(listener: str, users: Mapping[str, str]) -> dict[str, str]:
    """Broker properties that make ``listener`` accept SASL ``PLAIN`` logins of ``users``.

    Kafka reads them as ``listener.name.<listener lower>.<mechanism lower>.sasl.jaas.config``
    (one login module per listener and mechanism, the broker-side ``user_<name>="<password>"``
    entries of ``PlainLoginModule``) and ``listener.name.<listener lower>.sasl.enabled.mechanisms``;
    other listeners (inter-broker, controller) are untouched. Plain-text passwords in
    ``server.properties``: for a local test broker only.

    Parameters
    ----------
    listener
        Listener name, e.g. ``"SASL"``.
    users
        User name (letters, digits, ``_``, ``-``) -> password.

    Returns
    -------
    dict[str, str]
        Property name -> value.

    Examples
    --------
    >>> props = sasl_plain_properties("SASL", {"encore": 'pa"ss'})
    >>> props["listener.name.sasl.sasl.enabled.mechanisms"]
    'PLAIN'
    >>> print(props["listener.name.sasl.plain.sasl.jaas.config"])
    org.apache.kafka.common.security.plain.PlainLoginModule required user_encore="pa\\"ss";
    """
    entries = []
    for user, password in users.items():
        if not _SASL_USER_NAME.fullmatch(user):
            raise ValueError(f"SASL user name {user!r} must match {_SASL_USER_NAME.pattern}")
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        entries.append(f' user_{user}="{quoted}"')
    prefix = f"listener.name.{listener.lower()}."
    return {
        f"{prefix}sasl.enabled.mechanisms": "PLAIN",
        f"{prefix}plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required{''.join(entries)};"
        ),
    }


def render_properties(properties: Mapping[str, str]) -> str:
    r"""Java ``.properties`` text, escaped so that ``Properties.load`` reads back ``properties``.

    Parameters
    ----------
    properties
        Name -> value; any characters (JAAS configs, paths, non-ASCII).

    Returns
    -------
    str
        One ``key=value`` line per entry, in order.

    Examples
    --------
    >>> print(render_properties({"log.dirs": "C:\\kafka", "greeting": " héllo"}), end="")
    log.dirs=C:\\kafka
    greeting=\ h\u00e9llo
    """
    return "".join(
        f"{_escape_property(key, is_key=True)}={_escape_property(value, is_key=False)}\n"
        for key, value in properties.items()
    )


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text)
    os.replace(staging, path)


def _pid_alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child
    else:
        # Our child counts as alive until reaped: after SIGKILL its main thread shows
        # as a zombie while the other threads (and its sockets) are still going away.
        return reaped != pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(pid, 0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie answers kill(pid, 0)


def _new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in 22 URL-safe base64 characters."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # would read as a command-line option
            return cluster_id


class LocalKafka:
    """A single-node Kafka broker (KRaft) on ``127.0.0.1`` with its data in ``home``.

    Several instances pointed at the same ``home`` see the same broker, in this
    process or another (the CLI starts it in one command and stops it in the
    next): everything they need is in ``<home>/broker.json``.

    Parameters
    ----------
    home
        Data directory; created on start (``<project>/.encore/kafka`` for the CLI,
        a temporary directory for tests).
    version
        Kafka release, fetched by :func:`fetch_kafka`.
    port
        Client (``PLAINTEXT``) port; ``None`` (or 0) reuses the port of the
        formatted storage in ``home``, or else takes a free port picked by the OS.
    controller_port
        KRaft controller port; chosen like ``port``.
    extra_listeners
        More client listeners (e.g. a ``SASL_PLAINTEXT`` one); their security
        settings go into ``sasl_users`` and ``extra_properties``.
    sasl_users
        User name -> password: every SASL listener accepts these logins with the
        ``PLAIN`` mechanism (see :func:`sasl_plain_properties`); the ``PLAINTEXT``
        and ``CONTROLLER`` listeners stay unauthenticated.
    num_partitions
        Partitions of auto-created topics (match Faust's ``topic_partitions``).
    extra_properties
        Broker properties added last, see :func:`server_properties`.
    heap_options
        JVM heap options, as a sequence or one shell-quoted string like
        ``KAFKA_HEAP_OPTS``; keep them small on shared machines.
    cache_dir
        Jar cache root, see :func:`fetch_kafka`.
    java_home
        Java installation, see :func:`find_java`.
    start_timeout
        Seconds to wait for the broker to answer before giving up.
    stop_timeout
        Seconds to wait for a controlled shutdown before ``SIGKILL``.

    Examples
    --------
    Configuration only; the tests in ``tests/test_kafka_local.py`` run real brokers.

    >>> import tempfile
    >>> broker = LocalKafka(tempfile.mkdtemp(), port=19092, controller_port=19093,
    ...                     extra_listeners=[Listener("SASL", "SASL_PLAINTEXT", 19094)])
    >>> broker.ports
    {'PLAINTEXT': 19092, 'CONTROLLER': 19093, 'SASL': 19094}
    >>> broker.bootstrap_for("SASL")
    '127.0.0.1:19094'

    Users for SASL ``PLAIN`` logins need a listener that asks for them:

    >>> LocalKafka(tempfile.mkdtemp(), extra_listeners=[Listener("SASL", "SASL_PLAINTEXT")],
    ...            sasl_users={"encore": "s3cret"}).sasl_users
    {'encore': 's3cret'}
    >>> LocalKafka(tempfile.mkdtemp(), sasl_users={"encore": "s3cret"})
    Traceback (most recent call last):
    ...
    ValueError: sasl_users needs a SASL_PLAINTEXT or SASL_SSL listener
    >>> LocalKafka("/tmp/encore-kafka", num_partitions=8)
    LocalKafka(home='/tmp/encore-kafka', num_partitions=8)
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        version: str = KAFKA_VERSION,
        port: int | None = None,
        controller_port: int | None = None,
        extra_listeners: Sequence[Listener] = (),
        sasl_users: Mapping[str, str] | None = None,
        num_partitions: int = 1,
        extra_properties: Mapping[str, str] | None = None,
        heap_options: str | Sequence[str] = DEFAULT_HEAP_OPTIONS,
        cache_dir: str | os.PathLike[str] | None = None,
        java_home: str | os.PathLike[str] | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.home = home
        self.version = version
        self.port = port
        self.controller_port = controller_port
        self.extra_listeners = extra_listeners
        self.sasl_users = sasl_users
        self.num_partitions = num_partitions
        self.extra_properties = extra_properties
        self.heap_options = heap_options
        self.cache_dir = cache_dir
        self.java_home = java_home
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout

        self._check_arguments()
        # Learned when a broker is started or adopted.
        self._started_ports: dict[str, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started_here = False

    def _check_arguments(self) -> None:
        if self.num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        names = [listener.name for listener in self.extra_listeners]
        for listener in self.extra_listeners:
            if not _LISTENER_NAME.fullmatch(listener.name):
                raise ValueError(f"listener name {listener.name!r} must match [A-Z][A-Z0-9_]*")
            if listener.security_protocol not in _SECURITY_PROTOCOLS:
                raise ValueError(
                    f"listener {listener.name}: security_protocol must be one of "
                    f"{sorted(_SECURITY_PROTOCOLS)}"
                )
        reserved = {BROKER_LISTENER, CONTROLLER_LISTENER}.intersection(names)
        if reserved or len(set(names)) != len(names):
            raise ValueError(f"extra listener names must be unique and not {sorted(reserved)}")
        fixed = [port for port in self._fixed_ports().values() if port is not None]
        if len(set(fixed)) != len(fixed):
            raise ValueError(f"listeners need distinct ports, got {fixed}")
        owned = sorted(_OWNED_PROPERTIES.intersection(self.extra_properties or {}))
        if owned:
            raise ValueError(_owned_properties_message(owned))
        if self.sasl_users:
            # the same checks as at start, but now: a typo should not wait for the JVM
            server_properties(
                "/",
                {name: 1 for name in (BROKER_LISTENER, CONTROLLER_LISTENER, *names)},
                security_protocols=self._security_protocols(),
                sasl_users=self.sasl_users,
            )

    def __repr__(self) -> str:
        # Like River: the arguments that differ from their defaults.
        shown = [f"home={os.fspath(self.home)!r}"]
        for name, parameter in inspect.signature(type(self)).parameters.items():
            value = getattr(self, name)
            if name != "home" and value != parameter.default:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -- paths -------------------------------------------------------------------------

    @property
    def home_dir(self) -> Path:
        """``home`` as an absolute path without symlinks, the same from every instance."""
        return Path(self.home).resolve()

    @property
    def data_dir(self) -> Path:
        """``log.dirs`` of the broker."""
        return self.home_dir / "data"

    @property
    def log_path(self) -> Path:
        """The broker's stdout and stderr."""
        return self.home_dir / "kafka.out"

    @property
    def _state_path(self) -> Path:
        return self.home_dir / "broker.json"

    @property
    def _storage_path(self) -> Path:
        return self.home_dir / "storage.json"

    @property
    def _properties_path(self) -> Path:
        return self.home_dir / "server.properties"

    # -- addresses ---------------------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        """Listener name -> port of this broker.

        Known once started, or when every port was given, or when a broker runs in
        ``home``.

        Raises
        ------
        KafkaToolError
            If no port has been chosen yet.
        """
        if self._started_ports is not None:
            return dict(self._started_ports)
        fixed = self._fixed_ports()
        if None not in fixed.values():
            return {name: port for name, port in fixed.items() if port is not None}
        state = self._read_state()
        if state is not None:
            return dict(state["ports"])
        raise KafkaToolError(
            f"no ports chosen yet for the broker in {self.home_dir}: start() it or pass the ports"
        )

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` of the ``PLAINTEXT`` listener, for Kafka clients."""
        return self.bootstrap_for(BROKER_LISTENER)

    def bootstrap_for(self, listener: str) -> str:
        """``"127.0.0.1:<port>"`` of a listener by name (see ``extra_listeners``)."""
        return f"{LOOPBACK}:{self.ports[listener]}"

    def _fixed_ports(self) -> dict[str, int | None]:
        fixed = {BROKER_LISTENER: self.port, CONTROLLER_LISTENER: self.controller_port}
        fixed.update({listener.name: listener.port for listener in self.extra_listeners})
        return {name: port or None for name, port in fixed.items()}  # 0 means "any free port"

    # -- state files -------------------------------------------------------------------

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise KafkaToolError(f"{path} is not valid JSON; delete it") from error
        return record if isinstance(record, dict) else None

    def _read_state(self) -> dict[str, Any] | None:
        return self._read_json(self._state_path)

    def _is_our_broker(self, pid: int) -> bool:
        """Alive, and (where procfs tells) still the broker of this home, not a reused pid."""
        if not _pid_alive(pid):
            return False
        if not Path("/proc/self/cmdline").exists():
            return True  # no procfs to ask
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # exited meanwhile
        return b"kafka.Kafka" in command_line and os.fsencode(self._properties_path) in (
            command_line
        )

    # -- lifecycle ---------------------------------------------------------------------

    def fetch(self) -> Path:
        """Fetch (or find cached) this version's jars; see :func:`fetch_kafka`."""
        return fetch_kafka(self.version, self.cache_dir, java_home=self.java_home)

    def status(self) -> BrokerStatus | None:
        """The broker recorded in ``home``, or ``None`` if none was started or it was stopped.

        Works from any process: it reads ``<home>/broker.json`` and checks the pid
        and the port.
        """
        state = self._read_state()
        if state is None:
            return None
        pid, ports = int(state["pid"]), {str(k): int(v) for k, v in state["ports"].items()}
        running = self._is_our_broker(pid) and _kafka_answers(ports[BROKER_LISTENER])
        return BrokerStatus(
            running=running,
            pid=pid,
            bootstrap=f"{LOOPBACK}:{ports[BROKER_LISTENER]}",
            ports=ports,
            version=str(state["version"]),
            started_at=datetime.fromisoformat(state["started_at"]),
            home=self.home_dir,
        )

    def start(self, fresh: bool = False) -> Self:
        """Start the broker and wait until it answers; adopt it if it already runs.

        Parameters
        ----------
        fresh
            ``False`` reuses formatted storage in ``home`` (data survives a stop and
            start) and its ports, unless ports were given; ``True`` wipes the data
            first and picks free ports anew (unless given). Refused while a broker
            runs in ``home``.

        Returns
        -------
        LocalKafka
            ``self``, with :attr:`bootstrap` and :attr:`ports` set.

        Raises
        ------
        PortInUseError
            A port is taken by something else.
        KafkaToolError
            No java, the fetch failed, the broker exited during start-up (the
            message carries the last log lines) or did not answer in time.
        """
        with _exclusive_lock(self.home_dir / ".lock"):
            if self._adopt_running(fresh):
                return self
            java = find_java(self.java_home)
            if fresh:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self._storage_path.unlink(missing_ok=True)
            storage = self._read_json(self._storage_path)
            ports = self._choose_ports(storage)
            for name, port in ports.items():
                if not _port_is_free(port):
                    raise PortInUseError(port, name)
            lib_dir = fetch_kafka(self.version, self.cache_dir, java_home=self.java_home)
            self._write_config(ports)
            cluster_id = self._format_storage(java, lib_dir, storage)
            _write_atomically(
                self._storage_path,
                json.dumps({"cluster_id": cluster_id, "ports": ports, "version": self.version})
                + "\n",
            )
            self._launch(java, lib_dir, ports)
        return self

    def _adopt_running(self, fresh: bool) -> bool:
        state = self._read_state()
        if state is None:
            return False
        pid, ports = int(state["pid"]), {str(k): int(v) for k, v in state["ports"].items()}
        if not self._is_our_broker(pid):
            self._state_path.unlink(missing_ok=True)  # it died without stop()
            return False
        if fresh:
            raise KafkaToolError(
                f"a broker (pid {pid}) runs in {self.home_dir}; stop() it before a fresh start"
            )
        clashes = {
            name: wanted
            for name, wanted in self._fixed_ports().items()
            if wanted is not None and ports.get(name) != wanted
        }
        if clashes or state["version"] != self.version:
            raise KafkaToolError(
                f"a broker (pid {pid}, Kafka {state['version']}, ports {ports}) already runs "
                f"in {self.home_dir}, unlike the requested Kafka {self.version} {clashes}; "
                "stop() it first"
            )
        self._wait_until_ready(pid, ports[BROKER_LISTENER])  # it may still be starting
        self._started_ports = ports
        return True

    def _choose_ports(self, storage: Mapping[str, Any] | None) -> dict[str, int]:
        previous: Mapping[str, int] = storage["ports"] if storage else {}
        chosen = {
            name: port if port is not None else previous.get(name)
            for name, port in self._fixed_ports().items()
        }
        unset = [name for name, port in chosen.items() if port is None]
        taken = [port for port in chosen.values() if port is not None]
        for name, port in zip(unset, pick_free_ports(len(unset), exclude=taken), strict=True):
            chosen[name] = port
        return {name: int(port) for name, port in chosen.items() if port is not None}

    def _write_config(self, ports: Mapping[str, int]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.home_dir / "log4j2.properties").write_bytes(_packaged_file("log4j2.properties"))
        properties = server_properties(
            self.data_dir,
            ports,
            security_protocols=self._security_protocols(),
            num_partitions=self.num_partitions,
            sasl_users=self.sasl_users,
            extra_properties=self.extra_properties,
        )
        header = "# Written by stream/kafka_local.py on every start; edits are lost.\n"
        _write_atomically(self._properties_path, header + render_properties(properties))

    def _security_protocols(self) -> dict[str, str]:
        return {listener.name: listener.security_protocol for listener in self.extra_listeners}

    def _java_command(self, java: Path, lib_dir: Path, *options: str) -> list[str]:
        return [
            os.fspath(java),
            *options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home_dir / 'log4j2.properties'}",
            "-cp",
            os.fspath(lib_dir / "*"),  # the java launcher expands the wildcard itself
        ]

    def _format_storage(self, java: Path, lib_dir: Path, storage: Mapping[str, Any] | None) -> str:
        if storage is not None and (self.data_dir / "meta.properties").is_file():
            return str(storage["cluster_id"])
        cluster_id = _new_cluster_id()
        command = [
            *self._java_command(
                java,
                lib_dir,
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dkafka.log.level=WARN",
            ),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            os.fspath(self._properties_path),
            "--ignore-formatted",
        ]
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=self.start_timeout,
            check=False,
        )
        if completed.returncode != 0:
            raise KafkaToolError(
                f"formatting the storage in {self.data_dir} failed (exit code "
                f"{completed.returncode}); last lines:\n{_tail(completed.stdout)}"
            )
        return cluster_id

    def _launch(self, java: Path, lib_dir: Path, ports: Mapping[str, int]) -> None:
        if self.log_path.exists():
            os.replace(self.log_path, self.log_path.with_name("kafka.out.1"))
        command = [
            *self._java_command(
                java,
                lib_dir,
                *self._heap_arguments(),
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
            ),
            "kafka.Kafka",
            os.fspath(self._properties_path),
        ]
        with open(self.log_path, "wb") as log_file:
            # Own session: Ctrl-C in the terminal that started it does not stop it.
            process = subprocess.Popen(
                command,
                cwd=self.home_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._process, self._started_here = process, True
        # Recorded before the wait, so a broker whose starter dies can still be stopped.
        state = {
            "pid": process.pid,
            "ports": dict(ports),
            "bootstrap": f"{LOOPBACK}:{ports[BROKER_LISTENER]}",
            "version": self.version,
            "started_at": datetime.now(UTC).isoformat(),
            "home": os.fspath(self.home_dir),
        }
        _write_atomically(self._state_path, json.dumps(state, indent=2) + "\n")
        try:
            self._wait_until_ready(process.pid, ports[BROKER_LISTENER])
        except BaseException:
            self._signal_and_wait(process.pid, signal.SIGKILL, grace=10.0)
            self._forget_process()
            raise
        self._started_ports = dict(ports)

    def _heap_arguments(self) -> list[str]:
        if isinstance(self.heap_options, str):
            return shlex.split(self.heap_options)
        return list(self.heap_options)

    def _wait_until_ready(self, pid: int, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not _kafka_answers(port):
            if not _pid_alive(pid):
                raise self._startup_failure(f"the broker (pid {pid}) exited during start-up")
            if time.monotonic() > deadline:
                raise self._startup_failure(
                    f"the broker (pid {pid}) did not answer on {LOOPBACK}:{port} within "
                    f"{self.start_timeout:.0f} s"
                )
            time.sleep(0.1)

    def _startup_failure(self, what: str) -> KafkaToolError:
        try:
            tail = _tail(self.log_path.read_text(errors="replace"))
        except OSError:
            tail = "(no log)"
        hint = ""
        if "UnsupportedClassVersionError" in tail:
            hint = "; Kafka 4 needs Java 17 or newer"
        elif "Address already in use" in tail:
            hint = "; a port was taken after it was checked: retry, or choose other ports"
        return KafkaToolError(
            f"{what}{hint}. Last {_LOG_TAIL_LINES} lines of {self.log_path}:\n{tail}"
        )

    def _signal_and_wait(self, pid: int, sig: signal.Signals, grace: float) -> bool:
        """Send ``sig``; True if the process is gone within ``grace`` seconds."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _forget_process(self) -> None:
        self._state_path.unlink(missing_ok=True)
        if self._process is not None and not _pid_alive(self._process.pid):
            self._process.wait()  # reaped already by _pid_alive: this only sets returncode
        self._process, self._started_here = None, False

    def _terminate(self, graceful: bool) -> bool:
        if not self.home_dir.is_dir():
            return False
        with _exclusive_lock(self.home_dir / ".lock"):
            state = self._read_state()
            pid = int(state["pid"]) if state else self._process.pid if self._process else None
            if pid is None or not self._is_our_broker(pid):
                self._forget_process()
                return False
            stopped = graceful and self._signal_and_wait(pid, signal.SIGTERM, self.stop_timeout)
            if not stopped and not self._signal_and_wait(pid, signal.SIGKILL, grace=10.0):
                raise KafkaToolError(f"the broker (pid {pid}) survived SIGKILL")
            if state is not None:
                # Not our child: it may read as a zombie before its sockets are closed.
                _wait_until_closed(state["ports"].values(), timeout=5.0)
            self._forget_process()
            return True

    def stop(self) -> bool:
        """Stop the broker of ``home`` (controlled shutdown, ``SIGKILL`` after ``stop_timeout``).

        Data in ``home`` is kept for the next :meth:`start`.

        Returns
        -------
        bool
            Whether a broker was running.
        """
        return self._terminate(graceful=True)

    def kill(self) -> bool:
        """``SIGKILL`` the broker at once, like a crash; for fault-injection tests.

        Returns
        -------
        bool
            Whether a broker was running.
        """
        return self._terminate(graceful=False)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A broker that already ran before the block (started by the CLI) keeps running.
        if self._started_here:
            self.stop()
