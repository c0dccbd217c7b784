"""A headless Chromium (Playwright) logged in to the admin, for benchmarks that watch a page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def open_logged_in(
    browser: Any, server: Any, path: str, *, username: str, password: str, init_script: str
) -> Any:
    """A page in a context (window) of its own, logged in through ``/admin/login/`` and on
    ``path``; ``init_script`` runs before the page's own scripts (instrumentation)."""
    context = browser.new_context()
    context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url(f"/admin/login/?next={quote(path)}"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(lambda url: url.endswith(path))
    return page
