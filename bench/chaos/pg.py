"""A private PostgreSQL cluster for the chaos benchmark: one it may restart.

Debian's PostgreSQL 15 binaries (``/usr/lib/postgresql/15/bin``), ``initdb`` in a temp
directory, listening on 127.0.0.1:<free port> (and a socket in that directory only),
trust authentication. Never the shared server on :5432. Run as the ``postgres`` system
user when this process is root (``initdb`` refuses root). Stopped (``-m immediate``) and
its directory removed on exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import harness

PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "128MB",
    # A throw-away database on a shared machine: no fsync (a fast restart still writes a
    # clean checkpoint, and the OS keeps the pages: nothing committed is lost by it).
    "fsync": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = harness.free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chaos_pg_"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        self.started = False
        self.restarts: list[dict[str, float]] = []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise harness.BenchError(
                f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
                f"\n{self.log_tail()}"
            )
        return proc

    def start(self) -> PrivatePostgres:
        if not (PG_BIN / "pg_ctl").exists():
            raise harness.BenchError(f"no PostgreSQL binaries in {PG_BIN} (set CHAOS_PG_BIN)")
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--locale=C.UTF-8")  # fmt: skip
        conf = self.data / "postgresql.conf"
        lines = [f"{k} = {v}" for k, v in SETTINGS.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.root}'"]
        with conf.open("a") as handle:
            handle.write("\n# chaos benchmark\n" + "\n".join(lines) + "\n")
        self._pg_ctl("start")
        self.started = True
        self.wait_ready()
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                  action, *extra)  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            try:
                with harness.connect(self.url) as conn:
                    conn.execute("SELECT 1")
                return time.monotonic() - started
            except Exception:
                time.sleep(0.1)
        raise harness.BenchError(f"private PostgreSQL not ready after {timeout:.0f}s")

    def restart(self, mode: str = "fast") -> dict[str, float]:
        """``pg_ctl restart -m <mode>``; returns wall times (epoch seconds) of the restart."""
        began = time.time()
        self._pg_ctl("restart", "-m", mode)
        ready = time.time()
        self.wait_ready()
        record = {"began": began, "ready": ready, "seconds": round(ready - began, 2)}
        self.restarts.append(record)
        return record

    def outage(self, seconds: float) -> dict[str, float]:
        """``pg_ctl stop -m fast``, ``seconds`` with no server, ``pg_ctl start``."""
        began = time.time()
        self._pg_ctl("stop", "-m", "fast")
        stopped = time.time()
        time.sleep(seconds)
        self._pg_ctl("start")
        ready = time.time()
        self.wait_ready()
        record = {"began": began, "stopped": stopped, "ready": ready,
                  "seconds": round(ready - began, 2)}  # fmt: skip
        self.restarts.append(record)
        return record

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._pg_ctl("stop", "-m", "immediate")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def describe(self) -> dict[str, object]:
        version = ""
        with contextlib.suppress(Exception), harness.connect(self.url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return {
            "kind": "private pg_ctl cluster (Debian PostgreSQL binaries), throw-away",
            "bin": str(PG_BIN),
            "server_version": version,
            "port": self.port,
            "settings": {k: v.strip("'") for k, v in SETTINGS.items()},
        }
