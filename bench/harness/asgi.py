"""A real ASGI server (uvicorn) for benchmarks that drive the site over HTTP or WebSocket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bench.harness.base import BASE_DIR, BenchError
from bench.harness.processes import free_port, log_tail


class AsgiServer:
    """``uvicorn config.asgi:application`` on 127.0.0.1 in its own session, output to a log.

    Tenant hosts like ``bench.localhost`` do not resolve from Python here (PITFALLS):
    ``get`` connects to 127.0.0.1 and sends the Host header itself.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        host: str,
        ws: str = "websockets-sansio",
        port: int | None = None,
    ):
        self.env = dict(env)
        self.log_path = log_path
        self.host = host
        self.ws = ws
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), "--ws", self.ws, "--ws-per-message-deflate",
                "false", "--lifespan", "off", "--no-access-log"]  # fmt: skip

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def get(self, path: str, *, cookies: Mapping[str, str] | None = None, timeout: float = 30):
        import httpx

        headers = {"Host": f"{self.host}:{self.port}"}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=timeout)

    def start(self, timeout: float = 60) -> AsgiServer:
        import httpx

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            self.argv, cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise BenchError(f"uvicorn exited early; log {self.log_path}:\n{self.log_tail()}")
            try:
                self.get("/healthz", timeout=5)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"uvicorn did not answer in {timeout:.0f}s; log {self.log_path}")

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log_path, chars)

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
