"""Processes the chaos benchmark starts: the marketplace sandbox and ``manage.py
run_workers`` (the watchdog and the django-q2 cluster under it), with a way to find each
process of the cluster (to kill it) and to end them all, whatever state they are in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import harness


class SandboxServer:
    """``python -m marketplaces.sandbox`` on a free port, profile ``none`` (rules are set
    over HTTP), in its own session."""

    def __init__(self, log_path: Path):
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> SandboxServer:
        import httpx

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "marketplaces.sandbox",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--profile",
                    "none",
                ],
                cwd=harness.BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise harness.BenchError(f"sandbox exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/_sandbox/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise harness.BenchError(f"sandbox did not answer in {timeout:.0f}s")

    def control(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        import httpx

        answer = httpx.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=timeout)
        if answer.status_code != 200:
            raise harness.BenchError(f"sandbox {method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process_group(self.proc, grace=5)
        self.proc = None

    def log_tail(self, chars: int = 2000) -> str:
        return harness.log_tail(self.log_path, chars)


def stop_process_group(proc: subprocess.Popen, *, grace: float) -> None:
    """SIGTERM to the main PID, then SIGKILL to its whole group (its own session)."""
    pgid = proc.pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    kill_group(pgid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Workers:
    """``manage.py run_workers --workers N`` in its own session, output to a log.

    The watchdog starts ``qcluster`` in a session of its own; django-q2's processes are
    forks: qcluster (main) → sentinel → workers, then the monitor, then the pusher (spawn
    order, ``Sentinel.spawn_cluster``; later forks of a sentinel are reincarnations of
    what died). ``roles()`` names each process from that order and from what was killed.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        workers: int = 2,
        extra_args: tuple[str, ...] = (),
    ):
        self.env = dict(env)
        self.log_path = log_path
        self.workers = workers
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.last_pid = 0
        self.cluster_groups: set[int] = set()  # every qcluster main pid seen (its pgid)
        self.role_of: dict[int, str] = {}
        self.known_sentinels: set[int] = set()
        self.pending: dict[int, list[str]] = {}  # sentinel pid -> roles killed, not yet back

    def start(self) -> Workers:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "run_workers",
                    "--workers",
                    str(self.workers),
                    *self.extra_args,
                ],
                cwd=harness.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.last_pid = self.proc.pid
        return self

    @property
    def pid(self) -> int:
        """The watchdog's pid (also after it stopped: its WorkerCluster row is keyed by it)."""
        return self.last_pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def roles(self) -> dict[str, list[int]]:
        """``{"qcluster": [pid], "sentinel": [pid], "worker": [...], "monitor": [...],
        "pusher": [...]}`` of the cluster under the watchdog right now."""
        import psutil

        found: dict[str, list[int]] = {}
        if not self.running():
            return found
        try:
            mains = psutil.Process(self.last_pid).children()
        except psutil.NoSuchProcess:
            return found
        for main in mains:
            self.cluster_groups.add(main.pid)
            found.setdefault("qcluster", []).append(main.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                for sentinel in main.children():
                    found.setdefault("sentinel", []).append(sentinel.pid)
                    self._classify(sentinel, found)
        return found

    def _classify(self, sentinel, found: dict[str, list[int]]) -> None:
        import psutil

        try:
            children = sorted(
                (c for c in sentinel.children() if c.status() != psutil.STATUS_ZOMBIE),
                key=lambda c: (c.create_time(), c.pid),
            )
        except psutil.NoSuchProcess:
            return
        if sentinel.pid not in self.known_sentinels:
            if len(children) < self.workers + 2:
                return  # still spawning: name them once all are there
            self.known_sentinels.add(sentinel.pid)
            order = ["worker"] * self.workers + ["monitor", "pusher"]
            for child, role in zip(children, order, strict=False):
                self.role_of[child.pid] = role
        for child in children:
            role = self.role_of.get(child.pid)
            if role is None:  # a reincarnation: what we killed there, else a recycled worker
                pending = self.pending.get(sentinel.pid) or []
                role = pending.pop(0) if pending else "worker"
                self.role_of[child.pid] = role
            found.setdefault(role, []).append(child.pid)

    def kill(self, role: str, pid: int) -> None:
        """SIGKILL one process (``role`` "group": the qcluster's whole process group)."""
        import psutil

        if role == "group":
            kill_group(pid)
            return
        if role in ("worker", "monitor", "pusher"):
            with contextlib.suppress(psutil.NoSuchProcess):
                parent = psutil.Process(pid).ppid()
                self.pending.setdefault(parent, []).append(role)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 40) -> dict[str, Any]:
        """SIGTERM to the watchdog (it stops its cluster), then SIGKILL whatever is left:
        its group and every cluster group it started."""
        info: dict[str, Any] = {"graceful": True}
        if self.proc is None:
            return info
        self.roles()  # note the current cluster's group
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                info["graceful"] = False
        kill_group(self.proc.pid)
        for pgid in self.cluster_groups:
            kill_group(pgid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        info["exit_code"] = self.proc.returncode
        self.proc = None
        return info

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def restart_log(self) -> list[dict[str, Any]]:
        """The watchdog's restarts from its log: when it decided to restart (and why), when
        the next cluster started, and the time in between (epoch seconds, local clock)."""
        import datetime as dt

        out: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if "orchestration.watchdog" not in line:
                continue
            try:
                at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if "restarting the cluster: " in line:
                reason = line.split("restarting the cluster: ", 1)[1].strip()
                out.append({"restart_at": at, "reason": reason, "started_at": None})
            elif "started cluster pid" in line and out and out[-1]["started_at"] is None:
                out[-1]["started_at"] = at
                out[-1]["down_s"] = round(at - out[-1]["restart_at"], 2)
        return out

    def restart_reasons(self) -> list[str]:
        marker = "restarting the cluster: "
        return [
            line.split(marker, 1)[1].strip()
            for line in self.log_text().splitlines()
            if marker in line
        ]
