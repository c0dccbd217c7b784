"""Real worker processes: a django-q2 cluster in a subprocess against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers import database_url

BASE_DIR = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
# Longer than the longest chain of waits an e2e test makes (up to ~300 s of ``wait_for``)
# plus starting and stopping its processes (30 s each): the global timeout (pyproject) is
# for in-process tests.
E2E_TIMEOUT = 600


def pytest_collection_modifyitems(items):
    for item in items:
        if E2E_DIR in Path(item.path).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


class Cluster:
    def __init__(
        self, env: dict[str, str], log_path: Path, command: tuple[str, ...] = ("qcluster",)
    ):
        self.env = env
        self.log_path = log_path
        self.command = command
        self.proc: subprocess.Popen | None = None

    def start(self) -> Cluster:
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *self.command],
            cwd=BASE_DIR, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # main PID only (django-q2 issue 346)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_cluster(tmp_path, clean_tenants) -> Callable[..., Cluster]:
    """Start a real qcluster; ``ORCHESTRATION_*`` overrides go in as environment variables."""
    clusters: list[Cluster] = []

    def start(
        workers: int = 2, command: tuple[str, ...] = ("qcluster",), **overrides: float
    ) -> Cluster:
        env = dict(
            os.environ,
            DATABASE_URL=database_url(connection.settings_dict),
            Q_WORKERS=str(workers),
            ORCHESTRATION_PROVIDER_MODULES="tests.engine_providers",
            PYTHONUNBUFFERED="1",
        )
        env.update({f"ORCHESTRATION_{k}": str(v) for k, v in overrides.items()})
        cluster = Cluster(env, tmp_path / f"qcluster-{len(clusters)}.log", command).start()
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


def wait_for(
    predicate: Callable[[], object], *, timeout: float = 60, interval: float = 0.1, what: str = ""
):
    """Poll until ``predicate()`` is truthy (a liveness deadline, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
