"""The dashboard in a real browser: headless Chromium against a worker fed by `encore simulate`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from headless_chromium import Page, chromium_page

from stream.processes import stop_process

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / ".encore" / "screenshots"  # git-ignored (.encore/)


async def _a_user_with_a_list(worker, timeout: float = 60.0) -> str:
    """The key of the first list on the recommendations topic."""
    consumer = AIOKafkaConsumer(
        worker.topic("recommendations"),
        bootstrap_servers=worker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    return record.key.decode()
    finally:
        await consumer.stop()
    raise AssertionError(f"no list published within {timeout:.0f}s")


async def _number(page: Page, element_id: str) -> float:
    text = await page.evaluate(f"document.getElementById({element_id!r}).textContent")
    try:
        return float(text.replace(",", ""))
    except ValueError:
        raise AssertionError(f"#{element_id} shows {text!r}, not a number") from None


async def test_dashboard_figures_update_and_the_explorer_shows_a_users_rows(worker, tmp_path):
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
        user_id = await _a_user_with_a_list(worker)
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
