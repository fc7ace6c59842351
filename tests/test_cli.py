"""The ``encore`` command as a user runs it (a real subprocess, the real entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream.eventlog import read_catalog, read_events


def encore(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_help_lists_the_project_commands():
    result = encore("--help")
    assert result.returncode == 0
    for command in ("worker", "kafka", "topics", "simulate", "tail", "evaluate", "demo"):
        assert f"  {command}" in result.stdout


def test_every_simulate_option_says_its_environment_variable():
    result = encore("simulate", "--help")
    assert result.returncode == 0
    for variable in (
        "ENCORE_SIM_USERS",
        "ENCORE_SIM_ITEMS",
        "ENCORE_SIM_EVENTS",
        "ENCORE_SIM_RATE",
    ):
        assert variable in result.stdout


@pytest.fixture(scope="module")
def simulated_log(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    result = encore(
        "simulate",
        "--no-publish",
        "--out",
        str(out),
        "--users",
        "60",
        "--items",
        "300",
        "--events",
        "3000",
    )
    assert result.returncode == 0, result.stderr
    return out


def test_simulate_writes_a_catalog_and_a_valid_time_ordered_event_log(simulated_log):
    catalog = read_catalog(simulated_log / "catalog.jsonl")
    events = list(read_events(simulated_log / "events.jsonl"))
    assert len(catalog) == 300
    assert len(events) == 3000
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert {e.item_id for e in events} <= {item.item_id for item in catalog}
    assert len({e.event_id for e in events}) == 3000


def test_evaluate_reports_every_model_as_json(simulated_log):
    result = encore("evaluate", str(simulated_log), "--model", "engine,popularity", "--json")
    assert result.returncode == 0, result.stderr
    reports = orjson.loads(result.stdout)
    assert [r["model"] for r in reports] == ["engine", "popularity"]
    for report in reports:
        assert report["events"] == 3000
        assert report["eligible"] > 0
        assert 0.0 <= report["recall_at_k"] <= 1.0
    assert reports[0]["skip_auc"] is not None


def test_evaluate_splits_the_engine_over_processes_and_says_what_stays_in_one(simulated_log):
    result = encore(
        "evaluate",
        str(simulated_log),
        "--model",
        "engine,popularity",
        "--processes",
        "2",
        "--sync-every",
        "500",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    engine, popularity = orjson.loads(result.stdout)
    assert (engine["processes"], engine["sync_every"], engine["events"]) == (2, 500, 3000)
    assert (popularity["processes"], popularity["sync_every"]) == (1, None)
    assert "popularity: in one process (it cannot share item updates)" in result.stderr

    refused = encore("evaluate", str(simulated_log), "--processes", "0")
    assert refused.returncode == 2
    assert "--processes" in refused.stderr and "Traceback" not in refused.stderr


def test_evaluate_accepts_a_plain_csv_and_names_the_bad_field(tmp_path):
    good = tmp_path / "ratings.csv"
    good.write_text(
        "user,item,timestamp,rating\n"
        + "".join(
            f"u{n % 7},i{(n * 13) % 40},{1_700_000_000 + n * 60},{1 + n % 5}\n" for n in range(400)
        )
    )
    result = encore("evaluate", str(good), "--model", "popularity", "--json")
    assert result.returncode == 0, result.stderr
    (report,) = orjson.loads(result.stdout)
    assert report["events"] == 400

    bad = tmp_path / "bad.csv"
    bad.write_text("u1,i1,1700000000\nu1,i2,yesterday\n")
    result = encore("evaluate", str(bad), "--model", "popularity")
    assert result.returncode != 0
    assert "bad.csv:2" in result.stderr and "timestamp" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_model_is_a_clear_error(simulated_log):
    result = encore("evaluate", str(simulated_log), "--model", "magic")
    assert result.returncode != 0
    assert "--model" in result.stderr and "magic" in result.stderr
    assert "Traceback" not in result.stderr


def test_kafka_status_of_a_broker_that_is_not_running(tmp_path):
    result = encore("kafka", "status", env={"ENCORE_KAFKA_HOME": str(tmp_path / "none")})
    assert result.returncode == 1
    assert "stopped" in result.stdout
