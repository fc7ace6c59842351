"""The dashboard in a real browser: headless Chromium against a worker fed by `encore simulate`
(half its users in the holdout arm)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from headless_chromium import Page, chromium_page

from stream.experiments import HOLDOUT, PERSONALISED
from stream.processes import running_worker, stop_process

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / ".encore" / "screenshots"  # git-ignored (.encore/)


async def _a_list_of_each_arm(worker, timeout: float = 60.0) -> dict[str, dict]:
    """The first list of each experiment arm on the recommendations topic."""
    consumer = AIOKafkaConsumer(
        worker.topic("recommendations"),
        bootstrap_servers=worker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    lists: dict[str, dict] = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    doc = orjson.loads(record.value)
                    if any(row["items"] for row in doc["rows"]):
                        lists.setdefault(doc["arm"], doc)
            if set(lists) == {PERSONALISED, HOLDOUT}:
                return lists
    finally:
        await consumer.stop()
    raise AssertionError(f"no list of each arm within {timeout:.0f}s: {sorted(lists)}")


async def _play_from(worker, lists: dict[str, dict]) -> None:
    """One play through to the end of the first item of each list, attributed to it."""
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()
    try:
        for doc in lists.values():
            row = next(row for row in doc["rows"] if row["items"])
            event = {
                "event_id": uuid.uuid4().hex,
                "type": "play",
                "user_id": doc["user_id"],
                "item_id": row["items"][0]["item_id"],
                "occurred_at": datetime.now(UTC).isoformat(),
                "ms_played": 200_000,
                "duration_ms": 200_000,
                "source": {"list_id": doc["list_id"], "row": row["row_id"], "position": 0},
            }
            await producer.send_and_wait(
                worker.topic("plays"), orjson.dumps(event), key=doc["user_id"].encode()
            )
    finally:
        await producer.stop()


@pytest.fixture
def holdout_worker(worker_env):
    """A worker splitting users half and half between the personalised and holdout arms."""
    worker_env.env["ENCORE_HOLDOUT_SHARE"] = "0.5"
    with running_worker(worker_env.env, worker_env.log_path):
        yield worker_env


async def _number(page: Page, element_id: str) -> float:
    text = await page.evaluate(f"document.getElementById({element_id!r}).textContent")
    try:
        return float(text.replace(",", ""))
    except ValueError:
        raise AssertionError(f"#{element_id} shows {text!r}, not a number") from None


async def test_dashboard_figures_update_and_the_explorer_shows_a_users_rows(
    holdout_worker, tmp_path
):
    worker = holdout_worker
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream",
            "simulate",
            "--users",
            "300",
            "--items",
            "600",
            "--events",
            "60000",
            "--rate",
            "400",
        ],
        env={**os.environ, **worker.env},
        stdout=(tmp_path / "simulate.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        lists = await _a_list_of_each_arm(worker)
        # simulated events carry no source: one attributed play per arm
        await _play_from(worker, lists)
        user_id = lists[PERSONALISED]["user_id"]
        port = worker.env["ENCORE_WEB_PORT"]
        async with chromium_page(tmp_path / "chromium") as page:
            await page.navigate(f"http://127.0.0.1:{port}/dashboard")
            await page.wait_for("document.getElementById('status').textContent.startsWith('live')")
            await page.wait_for(
                "Number(document.getElementById('events-total').textContent.replace(/,/g, '')) > 0"
            )

            # --- live figures: read twice, they grow
            events_before = await _number(page, "events-total")
            lists_before = await _number(page, "lists-published")
            await asyncio.sleep(3.0)
            events_after = await _number(page, "events-total")
            lists_after = await _number(page, "lists-published")
            assert events_after > events_before, (events_before, events_after)
            assert lists_after > lists_before, (lists_before, lists_after)
            assert await _number(page, "events-rate") > 0
            assert (
                await page.evaluate("document.getElementById('fresh-p50').textContent")
            ).endswith(" ms")
            assert (
                await page.evaluate("document.getElementById('fresh-p99').textContent")
            ).endswith(" ms")
            assert await _number(page, "dead-letters") == 0
            # the throughput chart has drawn a line with several points
            path = await page.evaluate(
                "document.querySelector('#chart-throughput path').getAttribute('d')"
            )
            assert path.count("L") >= 2, path

            # --- online quality per arm: both arms have users, and the attributed plays
            await page.wait_for("document.querySelectorAll('#quality-table tr.arm').length === 2")
            for arm in (PERSONALISED, HOLDOUT):
                cells = await page.evaluate(
                    f"Object.fromEntries(Array.from(document.querySelectorAll("
                    f"'#quality-table tr[data-arm=\"{arm}\"] td[data-metric]'))"
                    ".map(td => [td.dataset.metric, td.textContent]))"
                )
                assert float(cells["users"].replace(",", "")) > 0, (arm, cells)
                assert float(cells["attributed_events"]) >= 1, (arm, cells)
                # the attributed play was played through: a rate above 0 %
                assert cells["play_through_rate"].endswith(" %"), (arm, cells)
                assert float(cells["play_through_rate"].removesuffix(" %")) > 0, (arm, cells)
            # the play-through chart has a line per arm, drawn over several polls
            paths = await page.evaluate(
                "Array.from(document.querySelectorAll('#chart-quality path'))"
                ".map(p => p.getAttribute('d'))"
            )
            assert len(paths) == 2 and all(d.count("L") >= 2 for d in paths), paths
            legend = await page.evaluate("document.getElementById('legend-quality').textContent")
            assert PERSONALISED in legend and HOLDOUT in legend, legend

            # --- the user explorer: type a user id, press Enter, see their rows
            await page.type_into("#user-id", user_id)
            await page.press_enter()
            rows = await page.wait_for(
                "Array.from(document.querySelectorAll('#rec-rows tr.rec-row'))"
                ".map(tr => Array.from(tr.cells).map(td => td.textContent))"
            )
            assert all(cells[2] and cells[4] for cells in rows), rows  # item and reason
            title = await page.evaluate("document.getElementById('rows-title').textContent")
            assert user_id in title
            counts = await page.evaluate("document.getElementById('profile-counts').textContent")
            assert "plays" in counts and "skips" in counts, counts
            recent = await page.evaluate("document.querySelectorAll('tr.recent-event').length")
            assert recent > 0

            screenshot = await page.screenshot(tmp_path / "dashboard.png")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            kept = SCREENSHOTS / "dashboard.png"
            shutil.copyfile(screenshot, kept)
            print(f"dashboard screenshot: {screenshot} (copy: {kept})")

            # --- an unknown user: the explorer says so
            await page.evaluate("document.getElementById('user-id').value = ''")
            await page.type_into("#user-id", "nobody-at-all")
            await page.press_enter()
            error = await page.wait_for("document.getElementById('explorer-error').textContent")
            assert "nobody-at-all" in error and "no events" in error, error
            assert await page.evaluate("document.querySelectorAll('tr.rec-row').length") == 0
    finally:
        stop_process(simulator, timeout=10)
