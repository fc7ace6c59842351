"""A tiny run of the throughput benchmark (``bench/run.py``) on the session broker.

It checks that every figure is written and plausible -- never how fast anything
was: timings depend on the machine and on whoever else uses it.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.broker

BENCH_RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"
TINY = [
    "--quick",
    "--events", "3000",
    "--users", "400",
    "--items", "300",
    "--rate", "150",
    "--duration", "2",
    "--memory-users", "500",
    "--memory-items", "300",
    "--worker-time-limit", "20",
    "--warmup-seconds", "5",
    "--drain-timeout", "10",
]  # fmt: skip


def _bench_run() -> ModuleType:
    """``bench/run.py`` as a module (it is a script, not part of the package)."""
    if "bench_run" in sys.modules:
        return sys.modules["bench_run"]
    spec = importlib.util.spec_from_file_location("bench_run", BENCH_RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output_dir = tmp_path_factory.mktemp("bench-results")
    exit_code = _bench_run().main(
        [*TINY, "--broker", kafka_bootstrap, "--output-dir", str(output_dir)]
    )
    latest = json.loads((output_dir / "latest.json").read_text())
    stamped = [path for path in output_dir.glob("*.json") if path.name != "latest.json"]
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    assert exit_code == 0, latest["errors"]
    return latest


def _ascending(percentiles: dict[str, float]) -> bool:
    values = [percentiles[name] for name in ("p50", "p95", "p99", "max")]
    return all(value is not None and value >= 0 for value in values) and values == sorted(values)


def test_ceilings_read_every_backlog_event(results):
    figures = results["figures"]
    assert figures["backlog"]["events"] == 3000
    assert figures["backlog"]["messages"] == 3000 + 300  # events and the catalog
    raw = figures["raw_aiokafka"]
    assert raw["messages"] == 3000 and raw["events_per_second"] > 0
    assert len(raw["runs_events_per_second"]) == 3
    for mode in ("events", "take_events"):
        bare = figures[f"bare_faust_{mode}"]
        assert bare["mode"] == mode
        assert bare["messages"] >= 3000 and bare["events_per_second"] > 0
        assert bare["cpu_us_per_event"] > 0


def test_worker_backlog_figures(results):
    backlog = results["figures"]["worker_backlog"]
    assert 0 < backlog["events_accepted"] <= 3000
    assert backlog["ingest_events_per_second"] > 0
    assert backlog["rejected"] == {}  # the simulator's events are all valid
    if backlog["complete"]:
        assert backlog["end_to_end_events_per_second"] > 0
        assert backlog["lists_published"] > 0
    assert backlog["rss_mib_after"] > 0


def test_paced_runs_time_the_lists_they_caused(results):
    paced = results["figures"]["paced"]
    assert paced["warmup"]["catalog_items"] == 300
    probe = paced["kafka_round_trip"]
    assert probe["received"] == probe["messages"] and _ascending(probe["ms"])
    runs = paced["runs"]
    assert set(runs) == {"fixed", "share_of_max"}
    assert runs["fixed"]["target_events_per_second"] == 150
    for run in runs.values():
        assert run["events_produced"] >= 1
        assert run["lists_received"] >= run["lists_about_this_run"] > 0
        assert _ascending(run["freshness_ms"])
        assert _ascending(run["event_to_first_list_ms"])
        assert 0 < run["events_reflected_share"] <= 1
        assert isinstance(run["producer_kept_pace"], bool)
        assert isinstance(run["worker_caught_up"], bool)


def test_memory_figures(results):
    memory = results["figures"]["memory"]
    assert memory["users"] == 500 and memory["items"] == 300
    assert 0 < memory["base_rss_mib"] <= memory["after_users_rss_mib"]
    assert isinstance(memory["kib_per_user"], float) and isinstance(memory["kib_per_item"], float)
    # two steps of items and of new users, each second step's growth being the figure
    # --quick: one event per user, after one play of each of the 300 items
    assert memory["users_per_step"] == [250, 250] and memory["events"] == 300 + 500
    assert memory["items_per_step"] == [75, 75, 75, 75]
    assert memory["after_item_plays_rss_mib"] == memory["after_each_item_step_rss_mib"][-1] > 0
    assert len(memory["after_each_item_step_rss_mib"]) == 8  # catalog, plays, in each step
    assert isinstance(memory["kib_per_item_average"], float)
    assert isinstance(memory["kib_per_item_in_catalog_average"], float)
    assert isinstance(memory["kib_per_item_in_catalog"], float)
    assert len(memory["after_each_step_rss_mib"]) == 2
    assert memory["after_each_step_rss_mib"][-1] == memory["after_users_rss_mib"]
    assert isinstance(memory["kib_per_user_average"], float)


@pytest.mark.parametrize(("phase", "workers"), [("one_worker", 1), ("two_workers", 2)])
def test_scale_out_runs_drain_the_whole_backlog_with_every_worker(results, phase, workers):
    run = results["figures"][f"scale_out_{phase}"]
    assert run["workers"] == workers and run["events"] == 3000
    assert run["messages_produced"] == 3000 + 300  # the same events and catalog each run
    assert run["complete"] and not run["assignment_changed_during_run"]
    assert run["lists_drained"] and run["users_waiting_for_a_list_at_stop"] == 0
    assert run["events_accepted"] == 3000  # nothing lost, nothing learned twice
    assert run["events_before_window"] + run["events_in_window"] == 3000
    assert run["ingest_events_per_second"] > 0 and run["end_to_end_events_per_second"] > 0
    # A tiny backlog may all be taken while it is produced: then the run says so.
    cpu_measured = run["window_start"] == "end_of_production"
    assert cpu_measured or run["window_start"] == "first_event_production_included"
    per_worker = run["per_worker"]
    assert len(per_worker) == workers
    assert sum(worker["events_accepted"] for worker in per_worker) == 3000
    assert (
        sum(worker["event_partitions"] for worker in per_worker) == 3 * 8
    )  # plays, skips, replays
    for worker in per_worker:
        assert worker["event_partitions"] > 0 and worker["events_accepted"] > 0
        assert worker["rejected"] == {}
        if cpu_measured:
            # CPU time comes in 10 ms ticks: a worker left with a few events in the window
            # (its partitions drained while production ran) may honestly read 0.0.
            assert worker["cpu_share_of_one_core"] >= 0
            if worker["events_in_window"] >= 500:
                assert worker["cpu_share_of_one_core"] > 0
                assert worker["cpu_us_per_event"] > 0
        else:
            assert worker["cpu_share_of_one_core"] is None and worker["cpu_us_per_event"] is None
        assert worker["lists_published"] > 0 and worker["rss_mib_after"] > 0
    if cpu_measured and run["events_in_window"] >= 500:
        assert run["cpu_share_of_one_core"] > 0


def test_ratios_targets_and_facts(results):
    ratios = results["ratios"]
    assert set(ratios) == {
        "worker_to_raw",
        "worker_to_bare_faust",
        "worker_ingest_to_bare_faust",
        "bare_faust_events_to_raw",
        "bare_faust_take_events_to_raw",
        "two_workers_to_one_ingest",
        "two_workers_to_one_end_to_end",
    }
    assert all(value is not None and value > 0 for value in ratios.values())
    assert len(results["targets"]) == 5
    # Tiny sizes are not the targets' sizes: nothing may claim a PASS or a FAIL.
    assert {target["verdict"] for target in results["targets"]} == {"SKIP"}
    assert results["machine"]["nproc"] >= 1 and results["machine"]["python"]
    assert "commit" in results["git"]
    assert results["config"]["quick"] is True and results["config"]["events"] == 3000


def test_bench_helpers_examples_run():
    _bench_run()  # puts the repository root on sys.path, as the script does
    import bench.common

    outcome = doctest.testmod(bench.common, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_options_override_the_quick_sizes():
    run = _bench_run()
    config = run.config_from(run.parse_args(["--quick", "--events", "123", "--skip-memory"]))
    assert config.events == 123 and config.users == run.QUICK.users and config.skip_memory
    assert run.config_from(run.parse_args([])) == run.BenchConfig()
    with pytest.raises(SystemExit):
        run.config_from(run.parse_args(["--bare-faust-modes", "values"]))
    config = run.config_from(run.parse_args(["--phases", "scale_out, memory"]))
    assert config.phases == ("scale_out", "memory")
    with pytest.raises(SystemExit):
        run.config_from(run.parse_args(["--phases", "scaleout"]))


def test_scale_out_examples_run():
    _bench_run()
    import bench.scale_out

    outcome = doctest.testmod(bench.scale_out)
    assert outcome.attempted > 0 and outcome.failed == 0
