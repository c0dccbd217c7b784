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


# --- added for issue 17 (peers, ceilings, CPU; existing helpers above are unchanged) ----------


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


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their live descendants (psutil)."""
    import psutil

    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
    return total


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database (same machine only).

    ``sample()`` (call it while the workers run, e.g. at every poll) records each backend's
    CPU so far; a backend's figure is its last sample, so backends that end keep what they
    had used when last seen. ``None`` when the server is not local or /proc is not readable.
    """

    def __init__(self, url: str, dbname: str):
        self.conn = connect(url)
        self.dbname = dbname
        self.own_pid = self.conn.info.backend_pid
        self.cpu: dict[int, float] = {}
        self.available = True

    def sample(self) -> None:
        import psutil

        if not self.available:
            return
        pids = [
            row[0]
            for row in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                (self.dbname, self.own_pid),
            )
        ]
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            except psutil.Error:
                self.available = False
                return
            self.cpu[pid] = times.user + times.system

    def total(self) -> float | None:
        return round(sum(self.cpu.values()), 3) if self.available and self.cpu else None

    def close(self) -> None:
        self.conn.close()


WAL_COLUMNS = ("wal_records", "wal_bytes", "wal_write", "wal_sync")


def wal_stats(conn) -> dict[str, int]:
    """``pg_stat_wal`` counters (PostgreSQL 14+; server-wide: other databases count too)."""
    with contextlib.suppress(Exception):
        conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(f"SELECT {', '.join(WAL_COLUMNS)} FROM pg_stat_wal").fetchone()
    return dict(zip(WAL_COLUMNS, (int(v) for v in row), strict=True))


def find_pgbench() -> str | None:
    """pgbench of the server's major version if known: system PostgreSQL, then pgserver's."""
    import glob
    import shutil

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-not-found]

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"))
    found = shutil.which("pgbench")
    if found:
        candidates.append(found)
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def pgbench_single_row_updates(
    url: str, *, clients: int, seconds: int, rows: int = 1000, options: str = ""
) -> dict[str, Any]:
    """The server's ceiling for durable one-row-update transactions: ``pgbench`` running
    ``UPDATE bench_ceiling SET n = n + 1 WHERE id = random(1, rows)`` (one statement, one
    commit each) with ``clients`` connections for ``seconds``. ``options`` goes to
    ``PGOPTIONS`` (e.g. ``-c synchronous_commit=off`` for the non-durable figure)."""
    import environ

    binary = find_pgbench()
    if binary is None:
        return {"error": "pgbench not found"}
    with connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_ceiling")
        conn.execute("CREATE TABLE bench_ceiling (id int PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, %s) g", (rows,))
        conn.execute("VACUUM ANALYZE bench_ceiling")
    cfg = environ.Env.db_url_config(url)
    script = RESULTS_DIR / "pgbench_ceiling.sql.tmp"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"\\set id random(1, {rows})\nUPDATE bench_ceiling SET n = n + 1 WHERE id = :id;\n"
    )
    env = dict(os.environ, PGOPTIONS=options)
    argv = [binary, "-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds), "-f",
            str(script), "-U", cfg.get("USER") or "postgres"]  # fmt: skip
    if cfg.get("HOST"):
        argv += ["-h", str(cfg["HOST"])]
    if cfg.get("PORT"):
        argv += ["-p", str(cfg["PORT"])]
    if cfg.get("PASSWORD"):
        env["PGPASSWORD"] = str(cfg["PASSWORD"])
    argv.append(str(cfg["NAME"]))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 120)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-1000:], "binary": binary}
    tps = None
    latency = None
    for line in proc.stdout.splitlines():
        if line.startswith("tps =") and tps is None:
            tps = float(line.split()[2])
        if line.startswith("latency average ="):
            latency = float(line.split()[3])
    return {
        "tps": tps,
        "latency_ms": latency,
        "clients": clients,
        "seconds": seconds,
        "options": options or "server defaults",
        "binary": binary,
        "statement": "UPDATE bench_ceiling SET n = n + 1 WHERE id = random(1, rows)",
        "rows": rows,
    }


# --- shared by engine_throughput, dispatch_fairness and live_admin ------------------------------


def seconds_between(start, end) -> float | None:
    """``end - start`` in seconds (3 decimals); None if either is missing."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def migrate(env: Mapping[str, str]) -> float:
    """``manage.py migrate_schemas`` on the bench database; seconds."""
    print("  migrate_schemas ...", flush=True)
    _, seconds = manage("migrate_schemas", "--noinput", env=env)
    return seconds


def describe_database(embedded: bool, name: str, **extra: Any) -> dict[str, Any]:
    """Which server, its version and the bench database (Django must be set up)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    return {
        "server": "embedded (pgserver)" if embedded else "DATABASE_URL",
        "server_version": version,
        "bench_database": name,
        **extra,
    }
