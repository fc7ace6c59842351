"""docker-compose.yml, the README and the code name the same settings (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml

from stream import commands
from stream.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
README = (ROOT / "README.md").read_text()


def _command_env_vars() -> set[str]:
    names: set[str] = set()
    for command in (
        commands.kafka_group,
        commands.topics_command,
        commands.simulate_command,
        commands.closed_loop_command,
        commands.tail_command,
        commands.evaluate_command,
        commands.demo_command,
    ):
        subcommands = command.commands.values() if isinstance(command, click.Group) else [command]
        for sub in subcommands:
            names.update(p.envvar for p in sub.params if isinstance(p, click.Option) and p.envvar)
    return names


SETTINGS_ENV_VARS = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
KNOWN_ENV_VARS = SETTINGS_ENV_VARS | _command_env_vars()


def _encore_vars(text: str) -> set[str]:
    return set(re.findall(r"\bENCORE_[A-Z_]+[A-Z]\b", text))


def test_compose_is_a_single_kraft_broker_without_version_key():
    assert "version" not in COMPOSE
    broker = COMPOSE["services"]["broker"]
    assert broker["image"].startswith("apache/kafka:")
    env = broker["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in str(value).lower() for value in env.values())
    assert "PLAINTEXT://broker:29092" in env["KAFKA_LISTENERS"]
    assert "PLAINTEXT_HOST://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert broker["healthcheck"]["test"]


SERVICES = COMPOSE["services"]
APP_SERVICES = sorted(name for name in SERVICES if name != "broker")
WORKERS = sorted(
    name for name, spec in SERVICES.items() if spec.get("command", [])[:2] == ["encore", "worker"]
)
#: What tells the workers of one group apart; everything else they share.
PER_WORKER = {"ENCORE_WORKER_ID", "ENCORE_WEB_PORT", "ENCORE_DATA_DIR"}


def _env(service: str) -> dict[str, str]:
    return {name: str(value) for name, value in SERVICES[service]["environment"].items()}


def _default(value: str) -> str:
    """What compose makes of ``${VAR:-default}`` when VAR is unset (other values as they are)."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    return match.group(1) if match else value


def _volumes(service: str) -> dict[str, str]:
    """Mount target -> named volume (``name:/path`` entries only)."""
    mounts = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


@pytest.mark.parametrize("service", APP_SERVICES)
def test_services_wait_for_a_healthy_broker_and_use_the_internal_listener(service):
    spec = SERVICES[service]
    assert spec["depends_on"]["broker"]["condition"] == "service_healthy"
    assert "broker:29092" in spec["environment"]["ENCORE_BROKER"]
    assert spec["command"][0] == "encore"


def test_topics_are_created_with_enough_partitions_before_anything_uses_them():
    assert SERVICES["topics"]["command"] == ["encore", "topics"]
    for service in [*WORKERS, "simulator"]:
        condition = SERVICES[service]["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully", service
    for service in APP_SERVICES:
        assert _default(_env(service)["ENCORE_PARTITIONS"]) == "8", service
    broker_partitions = str(SERVICES["broker"]["environment"]["KAFKA_NUM_PARTITIONS"])
    assert broker_partitions == "${ENCORE_PARTITIONS:-8}"  # auto-created topics alike
    assert int(_default(broker_partitions)) >= 2 * len(WORKERS)  # room to spread the load


def test_two_workers_of_one_group_differ_only_in_id_port_and_data_dir():
    assert len(WORKERS) == 2
    envs = [_env(worker) for worker in WORKERS]
    for name in PER_WORKER:
        values = [env.get(name) for env in envs]
        assert None not in values and len(set(values)) == len(values), (name, values)
    shared = [{k: v for k, v in env.items() if k not in PER_WORKER} for env in envs]
    assert shared[0] == shared[1]
    assert "ENCORE_APP_ID" in shared[0]  # one consumer group: the partitions are shared


def test_workers_publish_their_own_port_on_localhost_only():
    host_ports = []
    for worker in WORKERS:
        ports = [str(port) for port in SERVICES[worker]["ports"]]
        assert all(port.startswith("127.0.0.1:") for port in ports)
        host, container = ports[0].removeprefix("127.0.0.1:").split(":")
        assert container == _env(worker)["ENCORE_WEB_PORT"]
        host_ports.append(host)
    assert len(set(host_ports)) == len(WORKERS)


def test_workers_keep_their_data_apart_and_share_one_checkpoint_volume():
    checkpoint_dirs = {_env(worker)["ENCORE_CHECKPOINT_DIR"] for worker in WORKERS}
    assert len(checkpoint_dirs) == 1
    (checkpoint_dir,) = checkpoint_dirs
    checkpoint_volumes = {_volumes(worker).get(checkpoint_dir) for worker in WORKERS}
    assert len(checkpoint_volumes) == 1 and None not in checkpoint_volumes
    (shared_volume,) = checkpoint_volumes
    assert shared_volume in COMPOSE["volumes"]  # a named volume, not a host path
    data_volumes = [_volumes(worker).get(_env(worker)["ENCORE_DATA_DIR"]) for worker in WORKERS]
    assert None not in data_volumes and len(set(data_volumes)) == len(WORKERS)
    assert shared_volume not in data_volumes
    assert all(volume in COMPOSE["volumes"] for volume in data_volumes)


def test_every_setting_in_compose_is_known_to_the_code_and_named_in_the_readme():
    in_compose = set()
    for spec in SERVICES.values():
        in_compose |= {name for name in spec.get("environment", {}) if name.startswith("ENCORE_")}
    assert in_compose, "compose configures Encore through ENCORE_* variables"
    assert in_compose <= KNOWN_ENV_VARS, in_compose - KNOWN_ENV_VARS
    assert in_compose <= _encore_vars(README), in_compose - _encore_vars(README)


def test_readme_names_only_real_settings_and_lists_every_setting():
    in_readme = _encore_vars(README) - {"ENCORE_TEST_BROKER"}  # read by tests/conftest.py
    assert in_readme <= KNOWN_ENV_VARS, in_readme - KNOWN_ENV_VARS
    assert SETTINGS_ENV_VARS <= in_readme, SETTINGS_ENV_VARS - in_readme


def test_readme_documents_the_settings_defaults_the_code_has():
    rows = dict(re.findall(r"^\| `(ENCORE_[A-Z_]+)` \| `([^`]*)` \|", README, re.MULTILINE))
    defaults = Settings()
    for name, documented in rows.items():
        field = name.removeprefix(ENV_PREFIX).lower()
        if field in ("kafka_cache",):  # documented with ~ for the home directory
            continue
        actual = getattr(defaults, field)
        shown = str(actual).lower() if isinstance(actual, bool) else str(actual)
        assert documented == shown, f"{name}: README says {documented!r}, code has {shown!r}"
