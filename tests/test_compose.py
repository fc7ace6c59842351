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


@pytest.mark.parametrize("service", ["worker", "simulator"])
def test_services_wait_for_a_healthy_broker_and_use_the_internal_listener(service):
    spec = COMPOSE["services"][service]
    assert spec["depends_on"]["broker"]["condition"] == "service_healthy"
    assert "broker:29092" in spec["environment"]["ENCORE_BROKER"]
    assert spec["command"][0] == "encore"


def test_worker_runs_the_worker_command_and_publishes_http_on_localhost_only():
    worker = COMPOSE["services"]["worker"]
    assert worker["command"][:2] == ["encore", "worker"]
    assert all(str(port).startswith("127.0.0.1:") for port in worker["ports"])


def test_every_setting_in_compose_is_known_to_the_code_and_named_in_the_readme():
    in_compose = set()
    for spec in COMPOSE["services"].values():
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
