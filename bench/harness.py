"""Shared machinery for benchmarks: a throw-away database, ``manage.py`` in a subprocess,
a real ``qcluster`` subprocess, progress lines and result files.

Nothing here imports Django at module level: a benchmark process first creates its
database, then points ``DATABASE_URL`` at it and only then sets Django up, so the
harness and every subprocess it starts talk to the same (fresh) database.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BASE_DIR / "bench" / "results"


class BenchError(RuntimeError):
    """A benchmark could not produce a figure (setup failed, cluster died, liveness timeout)."""


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (stop cluster, drop database) run."""

    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


# --- the database server and the throw-away database ----------------------------------


def server_url() -> tuple[str, bool]:
    """(a DATABASE_URL on the server the settings use, whether it is the embedded one).

    Same rule as ``config.settings``: ``DATABASE_URL`` (environment or ``.env``), else the
    embedded PostgreSQL under ``.data/`` (started here if stopped; this process then owns
    it and stops it when it exits).
    """
    import environ

    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, False
    from config import embedded_pg

    return embedded_pg.ensure_running(), True


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced (host, socket path and options kept).

    Works for ``postgresql://user@host:port/db?opts`` and for the embedded server's
    socket form ``postgresql://postgres@//path/to/socketdir/db``.
    """
    parts = urlsplit(url)
    head, _, _ = parts.path.rpartition("/")
    return urlunsplit(parts._replace(path=f"{head}/{name}"))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def connect(url: str):
    """A plain psycopg connection (autocommit) for CREATE/DROP DATABASE."""
    import environ
    import psycopg

    cfg = environ.Env.db_url_config(url)
    params: dict[str, Any] = {
        "dbname": cfg["NAME"],
        "user": cfg.get("USER") or None,
        "password": cfg.get("PASSWORD") or None,
        "host": cfg.get("HOST") or None,
        "port": cfg.get("PORT") or None,
        **cfg.get("OPTIONS", {}),
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)


class BenchDatabase:
    """``CREATE DATABASE bench_<random>`` on the server; dropped on exit, even on failure."""

    def __init__(self, server: str, prefix: str = "bench"):
        self.server = server
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self.url = with_database(server, self.name)
        self.keep = False  # leave it in place (debugging)

    def __enter__(self) -> BenchDatabase:
        with connect(self.server) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        self.drop()

    def drop(self) -> None:
        _close_django_connections()
        if self.keep:
            print(f"  kept database {self.name}: {redact(self.url)}")
            return
        try:
            with connect(self.server) as conn:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                except Exception:  # PostgreSQL < 13: no FORCE
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        except Exception as exc:
            print(
                f"!! could not drop database {self.name}: {exc} (drop it by hand)", file=sys.stderr
            )


def _close_django_connections() -> None:
    if "django.db" not in sys.modules:
        return
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


def setup_django(env: Mapping[str, str]) -> None:
    """Set Django up in this process against ``env['DATABASE_URL']`` (before settings load)."""
    if "config.settings" in sys.modules:
        raise BenchError(
            "Django settings were already loaded: run each benchmark in its own process"
        )
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    import logging

    import django

    django.setup()
    logging.getLogger("django-q").setLevel(logging.WARNING)  # no line per enqueued task


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


# --- a real django-q2 cluster -----------------------------------------------------------


class Cluster:
    """``manage.py qcluster`` in its own session, output to a log file.

    Stopped with SIGTERM to the main PID only: signalling the whole process group
    deadlocks django-q2 in "stopping" (PITFALLS, django-q2 issue 346). If it hangs, the
    group is killed.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path):
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.stop_seconds: float | None = None
        self.killed = False

    def start(self) -> Cluster:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
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
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- waiting and progress -----------------------------------------------------------------


class Progress:
    """``label: done/total`` on one line (a terminal), or a line every few seconds (a log)."""

    def __init__(self, label: str, total: int, stream=None, every: float = 2.0):
        self.label, self.total = label, total
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every = every
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        text = f"  {self.label}: {done}/{self.total} ({now - self._started:5.1f}s){extra}"
        if self.tty:
            self.stream.write("\r" + text.ljust(70))
            self.stream.flush()
        elif now - self._last >= self.every or done >= self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def wait_for_count(
    poll: Callable[[], int],
    total: int,
    *,
    label: str,
    cluster: Cluster,
    timeout: float,
    interval: float = 0.2,
    finished: Callable[[int], bool] | None = None,
) -> int:
    """Poll ``poll()`` every ``interval`` s until it reaches ``total`` (or ``finished(done)``).

    ``timeout`` is a liveness bound (a stuck run), not a speed requirement.
    """
    progress = Progress(label, total)
    deadline = time.monotonic() + timeout
    done = 0
    try:
        while True:
            done = poll()
            progress.update(done)
            if finished(done) if finished else done >= total:
                return done
            if not cluster.running():
                raise BenchError(
                    f"qcluster exited early ({label}: {done}/{total}); log {cluster.log_path}:\n"
                    f"{cluster.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{label}: only {done}/{total} after {timeout:.0f}s; log {cluster.log_path}:\n"
                    f"{cluster.log_tail()}"
                )
            time.sleep(interval)
    finally:
        progress.close()


# --- facts about the run --------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    info["loadavg_at_start"] = loadavg()
    return info


def loadavg() -> list[float] | None:
    """1/5/15-minute load: other work on the machine competes with the benchmark."""
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def git_state() -> dict[str, Any]:
    """The commit measured, and files changed but not committed outside ``bench/`` (they
    are measured too: the working tree is what runs)."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return proc.stdout if proc.returncode == 0 else ""

    commit = git("rev-parse", "HEAD").strip()
    if not commit:
        return {"commit": None}
    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
        if line[3:] and not line[3:].startswith("bench/")
    ]
    return {"commit": commit, "uncommitted_changes": changed}


def package_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "?"
    return versions


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (via a git-ignored ``.tmp`` file, then rename)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def rate(count: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(count / seconds, 2)


# --- added for dispatch_fairness (existing helpers above are unchanged) -----------------------


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


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted, non-empty list."""
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def distribution(values: list[float], digits: int = 1) -> dict[str, Any]:
    """count, mean, p50, p95, p99, min, max of ``values`` (rounded to ``digits``)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), digits),
        "p50": round(percentile(ordered, 50), digits),
        "p95": round(percentile(ordered, 95), digits),
        "p99": round(percentile(ordered, 99), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


# --- added for live_admin (existing helpers above are unchanged) ------------------------------


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
                "--port", str(self.port), "--ws", self.ws, "--lifespan", "off",
                "--no-access-log"]  # fmt: skip

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
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def announce_database(db: BenchDatabase, server: str, embedded: bool) -> None:
    where = "embedded PostgreSQL" if embedded else "DATABASE_URL server"
    print(f"  database {db.name} on the {where} ({redact(server)})")


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
