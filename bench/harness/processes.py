"""``manage.py`` in a subprocess, and real worker processes: a qcluster, or a group of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bench.harness.base import BASE_DIR, RESULTS_DIR, BenchError


def manage(*args: str, env: Mapping[str, str], timeout: float = 600) -> tuple[str, float]:
    """Run ``manage.py <args>`` in a subprocess; returns (output, seconds). Raises on failure."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(
            f"manage.py {' '.join(args)} failed with exit code {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr, seconds


class Cluster:
    """``manage.py qcluster`` in its own session, output to a log file.

    Stopped with SIGTERM to the main PID only: signalling the whole process group
    deadlocks django-q2 in "stopping" (PITFALLS, django-q2 issue 346). If it hangs, the
    group is killed.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, argv: list[str] | None = None):
        self.env = dict(env)
        self.log_path = log_path
        # Another worker process (a peer queue's) can be run and stopped the same way.
        self.argv = argv or [sys.executable, "manage.py", "qcluster"]
        self.proc: subprocess.Popen | None = None
        self.stop_seconds: float | None = None
        self.killed = False

    def start(self) -> Cluster:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            self.argv,
            cwd=BASE_DIR,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        started = time.perf_counter()
        pgid = self.proc.pid  # its own session: the group id is its pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # main PID only
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait()
        # A worker left behind by a main process that died: it is ours, end it.
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            pass
        else:
            time.sleep(0.5)
            try:
                os.killpg(pgid, signal.SIGKILL)
                self.killed = True
            except ProcessLookupError:
                pass
        self.stop_seconds = time.perf_counter() - started
        self._log.close()
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log_path, chars)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def create_tenants(schemas: list[str], *, env: Mapping[str, str]) -> dict[str, float]:
    """``manage.py create_tenant`` for each schema (domain ``<schema>.localhost``); seconds each."""
    seconds = {}
    for schema in schemas:
        _, seconds[schema] = manage(
            "create_tenant",
            "--name",
            schema.replace("_", " ").title(),
            "--schema",
            schema,
            "--domain",
            f"{schema.replace('_', '-')}.localhost",
            env=env,
        )
        seconds[schema] = round(seconds[schema], 2)
    return seconds


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_tenant_with_staff(
    schema: str, domain: str, *, username: str, password: str, env: Mapping[str, str]
) -> float:
    """``manage.py create_tenant`` with a staff user (superuser of the tenant); seconds."""
    _, seconds = manage(
        "create_tenant", "--name", schema.replace("_", " ").title(), "--schema", schema,
        "--domain", domain, "--username", username, "--password", password, env=env,
    )  # fmt: skip
    return round(seconds, 2)


def cluster_env(database_url: str, *, workers: int) -> dict[str, str]:
    """The environment every benchmark gives its Django processes and qcluster."""
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        Q_WORKERS=str(workers),
        ORCHESTRATION_PROVIDER_MODULES="tests.engine_providers",
        PYTHONUNBUFFERED="1",
        DEBUG="0",  # as in production: DEBUG records every query in memory
    )


class ProcessGroup:
    """Several worker processes (``Cluster`` objects) started, watched and stopped as one;
    ``wait_for_count`` accepts it wherever it accepts a ``Cluster``."""

    def __init__(self, members: list[Cluster]):
        self.members = members
        self.log_path = members[0].log_path if members else RESULTS_DIR
        self.killed = False
        self.stop_seconds: float | None = None

    def start(self) -> ProcessGroup:
        for member in self.members:
            member.start()
        return self

    def running(self) -> bool:
        return all(member.running() for member in self.members)

    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None]

    def stop(self, timeout: float = 30) -> None:
        started = time.perf_counter()
        for member in self.members:
            member.stop(timeout)
            self.killed = self.killed or member.killed
        self.stop_seconds = time.perf_counter() - started

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(m.log_tail(chars // max(len(self.members), 1)) for m in self.members)

    def __enter__(self) -> ProcessGroup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def migrate(env: Mapping[str, str]) -> float:
    """``manage.py migrate_schemas`` on the bench database; seconds."""
    print("  migrate_schemas ...", flush=True)
    _, seconds = manage("migrate_schemas", "--noinput", env=env)
    return seconds


def log_tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` of a process's log file ("" if it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
