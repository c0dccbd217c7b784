"""A headless Chromium (Playwright) logged in to the admin, for benchmarks that watch a page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def open_logged_in(
    browser: Any,
    server: Any,
    path: str,
    *,
    username: str,
    password: str,
    init_script: str,
    reduced_motion: bool = False,
) -> Any:
    """A page in a context (window) of its own, logged in through ``/admin/login/`` and on
    ``path``; ``init_script`` runs before the page's own scripts (instrumentation).

    ``reduced_motion``: the window asks for ``prefers-reduced-motion`` (live.css then draws no
    progress-bar transition or new-row highlight). A benchmark whose browser shares the
    server's CPUs uses it so that the browser's animation frames, which in use run on the
    staff's own computer, do not take CPU from the workers it measures; DOM updates are the
    same either way."""
    context = browser.new_context(reduced_motion="reduce" if reduced_motion else "no-preference")
    context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url(f"/admin/login/?next={quote(path)}"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(lambda url: url.endswith(path))
    return page
