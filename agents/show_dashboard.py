"""``GET /dashboard``: a live page of the worker's figures and a user explorer.

The page (``stream/dashboard.html``, plain HTML + SVG + vanilla JS) polls
``/stats/`` every second and calls the user API; it has no server-side state.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from stream.app import app


@functools.cache
def _page() -> str:
    return resources.files("stream").joinpath("dashboard.html").read_text(encoding="utf-8")


@app.page("/dashboard")
async def show_dashboard(web: Any, request: Any) -> Any:
    return web.html(_page())
