"""Fixtures for the security tests: the sandbox (shared with the marketplace tests) and a
tiny real HTTP server that plays an image host, a redirector or a broken proxy."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.integration.marketplaces.conftest import (  # noqa: F401 (fixtures)
    accounts,
    product,
    sandbox,
    sandbox_http,
    sandbox_process,
)

Route = tuple[int, dict[str, str], bytes]


@dataclass
class LocalServer:
    """A real HTTP server on 127.0.0.1; ``routes[path] = (status, headers, body)``."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server_state: dict[str, LocalServer] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            state = server_state["s"]
            state.hits.append(self.path)
            status, headers, body = state.routes.get(self.path, (404, {}, b"no such route"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state["s"] = LocalServer(port=httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server_state["s"]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def production_netsafety(settings) -> Callable[..., None]:
    """Settings as in production for outbound URLs: no private addresses, an optional
    allow-list (the way the sandbox is allowed)."""

    def apply(*allowed_hosts: str) -> None:
        settings.NETSAFETY_ALLOW_PRIVATE = False
        settings.NETSAFETY_ALLOWED_HOSTS = list(allowed_hosts)

    apply()
    return apply
