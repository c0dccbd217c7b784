"""A real ASGI server (uvicorn, ``--ws websockets``) in a subprocess, and a WebSocket client.

Tenant domains like ``alpha.localhost`` do not resolve from Python here (PITFALLS):
clients connect to 127.0.0.1 and send the tenant's Host header themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.db import connection
from websockets.sync.client import ClientConnection, connect

from tests.helpers import database_url
from tests.integration.live.layers import settings_module

BASE_DIR = Path(__file__).resolve().parents[3]
PROVIDERS = "tests.engine_providers,tests.integration.live.slow_provider"


def listening_socket() -> socket.socket:
    """A socket bound to a port the system chose and listening: handed to the server as is,
    so no other process can take the port between choosing it and using it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@dataclass
class AsgiServer:
    port: int
    proc: subprocess.Popen
    log_path: Path

    def url(self, host: str = "alpha.localhost", path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def get(self, path: str, *, host: str = "alpha.localhost", cookie: str = "") -> httpx.Response:
        headers = {"Host": f"{host}:{self.port}"}
        if cookie:
            headers["Cookie"] = cookie
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=10)

    def websocket(
        self, *, host: str = "alpha.localhost", cookie: str = "", origin: str | None = None
    ) -> ClientConnection:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        headers = {"Cookie": cookie} if cookie else None
        return connect(
            f"ws://{host}:{self.port}/ws/live/", sock=sock, proxy=None,
            origin=origin or f"http://{host}:{self.port}",
            additional_headers=headers, open_timeout=10,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_server(
    log_path: Path, *, kind: str = "postgres", database: str | None = None
) -> AsgiServer:
    """``database``: another DATABASE_URL than the tests' (one nobody answers at, say)."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    env = dict(
        os.environ,
        DATABASE_URL=database or database_url(connection.settings_dict),
        DJANGO_SETTINGS_MODULE=settings_module(kind),
        ORCHESTRATION_PROVIDER_MODULES=PROVIDERS,
        DEBUG="true",  # serves the static files (the live script) itself
        PYTHONUNBUFFERED="1",
    )
    with sock, open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--fd", str(sock.fileno()),
             "--ws", "websockets", "--ws-per-message-deflate", "false", "--lifespan", "off",
             "--no-access-log"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            pass_fds=(sock.fileno(),),
        )  # fmt: skip
    server = AsgiServer(port, proc, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{server.log()}")
        try:
            server.get("/healthz", host="localhost")
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"uvicorn did not start:\n{server.log()}")


def receive(ws: ClientConnection, *, timeout: float = 10) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def subscribe(ws: ClientConnection, **request) -> dict:
    ws.send(json.dumps(request))
    while True:
        message = receive(ws)
        if message["type"] in ("snapshot", "error"):
            return message


def receive_until(ws: ClientConnection, done, *, timeout: float = 60) -> list[tuple[float, dict]]:
    """(arrival time, message) until ``done(message)``."""
    received: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[m['type'] for _, m in received]}"
        message = receive(ws, timeout=remaining)
        received.append((time.time(), message))
        if done(message):
            return received
