"""Helpers for the marketplace tests: the sandbox process, its control API, running steps."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from django.db import connection

from marketplaces.models import Product
from orchestration.steps import Step, StepContext, get_provider

BASE_DIR = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A port nothing listens on right now (another process may take it before it is used)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on ``port``."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


@dataclass
class SandboxProcess:
    """``python -m marketplaces.sandbox`` on a free port, exactly as ``make run`` starts it."""

    url: str
    proc: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, log_path: Path, *, timeout: float = 20.0, attempts: int = 5) -> SandboxProcess:
        """Start it on a free port. The port is chosen before the process binds it, so another
        process may take it meanwhile: then ours exits (address in use) and it starts again on
        another port. Only a server this process listens on counts as started (not another
        run's sandbox that took the port)."""
        for _ in range(attempts):
            sandbox = cls._start_once(log_path, timeout=timeout)
            if sandbox is not None:
                return sandbox
        raise RuntimeError(f"sandbox lost its port {attempts} times:\n{log_path.read_text()}")

    @classmethod
    def _start_once(cls, log_path: Path, *, timeout: float) -> SandboxProcess | None:
        port = free_port()
        log = log_path.open("ab")
        start = log.tell()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marketplaces.sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--profile",  # explicit: a SANDBOX_PROFILE in the environment must not leak in
                "none",
            ],
            cwd=BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own descriptor
        sandbox = cls(f"http://127.0.0.1:{port}", proc, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                said = log_path.read_bytes()[start:].decode(errors="replace")
                if "address already in use" in said.lower():
                    return None  # another process took the port first: try another
                raise RuntimeError(
                    f"sandbox exited with {proc.returncode}:\n{log_path.read_text()}"
                )
            if _listens_on(proc.pid, port):
                try:
                    response = httpx.get(f"{sandbox.url}/_sandbox/health", timeout=1)
                    if response.status_code == 200:
                        return sandbox
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        sandbox.stop()
        raise RuntimeError(f"sandbox did not answer within {timeout}s:\n{log_path.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()  # uvicorn shuts down on SIGTERM
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Sandbox:
    """The control API of a running sandbox (``http`` is a client on its URL)."""

    url: str
    http: httpx.Client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self, seed: int | None = None) -> None:
        self._call("POST", "/_sandbox/reset", json={"seed": seed})

    def faults(self, *rules: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
        """Replace the fault rules."""
        return self._call("POST", "/_sandbox/faults", json={"rules": list(rules), "seed": seed})

    def ledger(self, **filters: str) -> list[dict[str, Any]]:
        return self._call("GET", "/_sandbox/ledger", params=filters)["entries"]

    def operations(self, **filters: str) -> Counter[str]:
        """How many times each side effect happened."""
        return Counter(e["operation"] for e in self.ledger(**filters))


def step_context(
    step: Step,
    *,
    marketplace: str,
    action: str,
    product: Product,
    outputs: Mapping[str, Mapping[str, Any]] | None = None,
    timeout: float | None = None,
    params: Mapping[str, Any] | None = None,
    order: int = 1,
) -> StepContext:
    """What the engine hands a step: built the same way, in the current tenant schema."""
    return StepContext(
        schema_name=connection.schema_name,
        job_id=1,
        marketplace=marketplace,
        action=action,
        product_id=product.pk,
        params=dict(params or {}),
        step_type=step.step_type,
        step_order=order,
        attempt=1,
        timeout=timeout or step.timeout,
        outputs=dict(outputs or {}),
    )


def steps(marketplace: str, action: str) -> list[Step]:
    return list(get_provider(marketplace).steps(action))


def run_step(step: Step, outputs: dict[str, Any], **ctx_args: Any) -> Mapping[str, Any]:
    """Run one step as the engine does: check first, perform only when the effect is missing."""
    ctx = step_context(step, outputs=outputs, **ctx_args)
    found = step.check(ctx)
    result = found if found is not None else step.perform(ctx)
    outputs[step.step_type] = dict(result)
    return result


def run_action(
    marketplace: str,
    action: str,
    product: Product,
    *,
    until: str | None = None,
    params: Mapping[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run an action's steps in order (stopping before ``until``); returns every step's output."""
    outputs = {} if outputs is None else outputs
    for order, step in enumerate(steps(marketplace, action), start=1):
        if step.step_type == until:
            break
        if step.step_type in outputs:
            continue
        run_step(
            step,
            outputs,
            marketplace=marketplace,
            action=action,
            product=product,
            params=params,
            order=order,
        )
    return outputs


def step_named(marketplace: str, action: str, step_type: str) -> Step:
    return next(s for s in steps(marketplace, action) if s.step_type == step_type)
