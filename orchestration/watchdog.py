"""The watchdog: runs a django-q2 cluster as a child process group and keeps it working.

django-q2's cluster can stop for good when one of its processes is killed (a
``multiprocessing.Queue`` reader holds the queue's lock while it waits, so ``kill -9``
of an idle worker leaves every other reader blocked: django-q2 issue #23, PITFALLS).
Its sentinel sees live processes and does nothing, and anything that runs *inside*
the cluster (the recovery sweep as a q2 task) stops with it. So this runs outside:

- it starts ``manage.py qcluster`` in a session of its own (one process group) with
  ``ORCHESTRATION_CLUSTER`` set, so the cluster's drains report their progress on this
  watchdog's ``tenants.WorkerCluster`` row;
- every ``sweep`` seconds it runs the recovery sweep itself (lost runs, runs of workers
  that are gone, work nobody was told about, drains for due work);
- every tick it checks the cluster: exited, or **stalled** — a drain message has waited
  ``stall`` seconds for a worker and this cluster has started none since, or one of its
  drains stopped reporting while its process lives — and restarts it: SIGKILL to the
  whole process group (a blocked cluster does not stop on SIGTERM), wait until no process
  of the group is left, recover the runs its workers held (a run that never started a
  step is handed back without counting an attempt), re-queue the drain messages it had
  swallowed, start a new cluster;
- it writes what it sees on its row every tick (alive, last progress, ready work,
  restarts in the last hour, the reason), read by the dashboard, ``/platform/``,
  ``/healthz/workers`` and ``manage.py workers_health``.

A database outage is waited out (the cluster cannot progress either; restarting it would
not help). See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import import_string

from orchestration.engine import slots
from orchestration.engine.recovery import sweep_all_tenants
from orchestration.engine.session import DATABASE_LOST
from tenants.db import use_public_schema
from tenants.models import DrainSlot, TenantQueue, WorkerCluster

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent


# A new cluster that has made no progress yet is called stalled only after this many stall
# periods (a slow start on a loaded machine is not a deadlock).
STARTUP_PATIENCE = 3


def periodic_tick(now: datetime | None = None) -> dict[str, Any]:
    """The periodic work other apps hook in (``settings.ORCHESTRATION_PERIODIC``: a name and
    the dotted path of a function taking ``now``), run after each recovery sweep; returns
    each one's result. One failing is logged and does not stop the others; a lost database
    is raised for the watchdog to wait for it."""
    results: dict[str, Any] = {}
    for name, path in settings.ORCHESTRATION_PERIODIC.items():
        try:
            results[name] = import_string(path)(now)
        except DATABASE_LOST:
            raise
        except Exception:
            logger.exception("watchdog: periodic %s (%s) failed", name, path)
        finally:
            use_public_schema()
    return results


@dataclass
class WatchdogConfig:
    tick: float = 1.0  # seconds between two checks
    stall: float = 10.0  # a drain waiting this long with no progress = stalled cluster
    sweep: float = 5.0  # recovery sweep every ... seconds
    reconcile: float = 15.0  # the sweep also re-announces forgotten work every ... seconds
    stop_grace: float = 10.0  # SIGTERM → SIGKILL when stopping
    workers: int | None = None  # Q_CLUSTER["workers"] when None


def cluster_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def restarts_in_last_hour(times: list[str], now: datetime) -> list[str]:
    since = now - timedelta(hours=1)
    return [t for t in times if datetime.fromisoformat(t) >= since]


def restart_delay(futile_restarts: int) -> float:
    """Seconds to wait before starting a cluster again: none for the first three restarts in
    a row of clusters that got nothing done, then 2, 4, 8 … 60 s."""
    return 0.0 if futile_restarts <= 3 else min(60.0, 2.0 ** (futile_restarts - 3))


class Watchdog:
    def __init__(self, config: WatchdogConfig | None = None, *, argv: list[str] | None = None):
        self.config = config or WatchdogConfig()
        self.name = cluster_name()
        self.argv = argv or [sys.executable, str(BASE_DIR / "manage.py"), "qcluster"]
        self.workers = self.config.workers or int(settings.Q_CLUSTER.get("workers", 2))
        self.proc: subprocess.Popen | None = None
        self.cluster_started: datetime | None = None
        self.stopping = False
        self.last_sweep = 0.0
        self.last_reconcile = 0.0
        self.last_db_error = 0.0
        self.restart_times: list[str] = []
        self.restarts_total = 0
        self.futile_restarts = 0  # restarts in a row of clusters that never made progress

    # --- the loop ------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        use_public_schema()
        self._register()
        self._sweep(reconcile=True)  # runs the previous cluster of this host left behind
        self.start_cluster()
        while not self.stopping:
            self.tick()
            self._sleep(self.config.tick)
        self.stop_cluster(graceful=True)
        self._write(state="stopped", stopped_at=timezone.now(), cluster_pid=None)
        return 0

    def _request_stop(self, signum, frame) -> None:
        self.stopping = True

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def tick(self) -> str | None:
        """One check; returns the reason of a restart it made, or None."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None and not self.stopping:
            exited = f"the cluster process exited with code {code}"
            # SIGKILL comes from outside (kill -9, the OOM killer); SIGSEGV, SIGABRT or an
            # exit code is the cluster's own failure.
            self.restart(exited, killed=code == -signal.SIGKILL)
            return exited
        try:
            now = time.monotonic()
            if now - self.last_sweep >= self.config.sweep:
                self._sweep(reconcile=now - self.last_reconcile >= self.config.reconcile)
            self._resend_drains()
            slots.keep_counting(self.cluster_pids())
            reason = self.stall_reason()
            ready = self._ready_tenants()
            # ``reason`` keeps the last problem (the panel shows why it last restarted).
            fields = {"reason": reason} if reason else {}
            self._write(
                state="stalled" if reason else "running", ready_waiting=ready,
                heartbeat_at=timezone.now(), **fields,
            )  # fmt: skip
        except DATABASE_LOST as exc:
            self._database_lost(exc)
            return None
        if reason:
            self.restart(reason)
        return reason

    def _database_lost(self, exc: BaseException) -> None:
        if time.monotonic() - self.last_db_error > 10:
            logger.warning("watchdog: database unreachable (%s); waiting", exc)
        self.last_db_error = time.monotonic()
        with contextlib.suppress(Exception):
            connection.close()

    def _sweep(self, *, reconcile: bool) -> None:
        try:
            result = sweep_all_tenants(reconcile=reconcile)
        except DATABASE_LOST as exc:
            self._database_lost(exc)
            return
        except Exception:
            logger.exception("watchdog: the recovery sweep failed")
            return
        finally:
            use_public_schema()
        self.last_sweep = time.monotonic()
        if reconcile:
            self.last_reconcile = self.last_sweep
        if result["recovered"] or result["reconciled"] or result["freed_slots"]:
            logger.warning("watchdog sweep: %s", result)
        with contextlib.suppress(*DATABASE_LOST):
            self._write(last_sweep_at=timezone.now())
        self._operator_tick()

    def _resend_drains(self, *, at_once: bool = False) -> None:
        """Send again the drain messages no worker took (``slots.resend_waiting_drains``):
        another cluster's pusher fetched them ahead, or a restarted cluster took them with
        it. A failing broker (Redis down) is logged and tried again next tick; a lost
        database is raised for the caller to wait for it."""
        try:
            slots.resend_waiting_drains(at_once=at_once)
        except DATABASE_LOST:
            raise
        except Exception:
            logger.exception("watchdog: sending drain messages again failed")

    def _operator_tick(self) -> None:
        # Schedules, stalled bulk operations, the nightly prune (ORCHESTRATION_PERIODIC);
        # a failure never stops the sweep or the cluster checks.
        try:
            periodic_tick()
        except DATABASE_LOST as exc:
            self._database_lost(exc)

    # --- what a stall looks like ---------------------------------------------------

    def cluster_pids(self) -> set[int]:
        """Every process of the cluster's group (qcluster, sentinel, workers, pusher, monitor)."""
        import psutil

        if self.proc is None:
            return set()
        try:
            root = psutil.Process(self.proc.pid)
            return {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def stall_reason(self) -> str | None:
        """Why the cluster is stalled, or None while it works (or has nothing to do)."""
        if self.cluster_started is None:
            return None
        now = timezone.now()
        stall = timedelta(seconds=self.config.stall)
        if now - self.cluster_started < stall:
            return None  # still starting
        if now - self.cluster_started < STARTUP_PATIENCE * stall and not (
            self._progressed_since_start()
        ):
            # A cluster that has done nothing yet may just be slow to start (imports and
            # worker spawns on a loaded machine): killing it would only start the next one
            # as slowly. Judged after a few stall periods, or as soon as it has worked.
            return None
        progress = (
            WorkerCluster.objects.filter(name=self.name)
            .values_list("last_progress_at", flat=True)
            .first()
        )
        queued = (
            DrainSlot.objects.filter(holder="queued", queued_at__isnull=False)
            .order_by("queued_at")
            .values_list("queued_at", flat=True)
            .first()
        )
        if queued is not None:
            since = max(queued, self.cluster_started)
            if now - since >= stall and (progress is None or progress < since):
                return (
                    f"a drain has waited {(now - since).total_seconds():.0f}s for a worker and "
                    "this cluster started none (its workers are blocked or gone)"
                )
        host = socket.gethostname()
        pids = self.cluster_pids()
        for holder, held_until in DrainSlot.objects.filter(
            holder__startswith=f"{host}:", held_until__lt=now
        ).values_list("holder", "held_until"):
            pid = holder.rpartition(":")[2]
            if pid.isdigit() and int(pid) in pids:
                return f"the drain on worker {holder} stopped reporting at {held_until:%H:%M:%S}"
        return None

    def _ready_tenants(self) -> int:
        return TenantQueue.objects.filter(ready_at__isnull=False, paused=False).count()

    # --- starting, stopping, restarting --------------------------------------------

    def start_cluster(self) -> None:
        env = dict(os.environ, **{slots.CLUSTER_ENV: self.name})
        env["Q_WORKERS"] = str(self.workers)
        self.proc = subprocess.Popen(self.argv, cwd=BASE_DIR, env=env, start_new_session=True)
        self.cluster_started = timezone.now()
        logger.info("watchdog %s: started cluster pid %s", self.name, self.proc.pid)
        with contextlib.suppress(*DATABASE_LOST):
            self._write(
                state="starting", cluster_pid=self.proc.pid,
                cluster_started_at=self.cluster_started, last_progress_at=None,
            )  # fmt: skip

    def stop_cluster(self, *, graceful: bool) -> None:
        """Stop the cluster and every process of its group; return when none is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # its own session: the group id is its pid
        if graceful and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # main PID only (django-q2 issue 346)
            try:
                self.proc.wait(timeout=self.config.stop_grace)
            except subprocess.TimeoutExpired:
                logger.warning("cluster did not stop in %.0fs; killing it", self.config.stop_grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.05)
        self.proc = None

    def restart(self, reason: str, *, killed: bool = False) -> None:
        """Replace the cluster. ``killed``: its process was killed from outside (SIGKILL:
        ``kill -9``, the OOM killer), not ended by a failure of its own."""
        logger.error("watchdog %s: restarting the cluster: %s", self.name, reason)
        # A cluster that worked before it was killed (the OOM killer, an operator) comes back
        # at once; so does one killed by SIGKILL while it was still starting (nothing of its
        # own went wrong: kills a few seconds apart would otherwise look like a crash loop and
        # hold every later start back up to a minute). Only clusters that end by themselves
        # without getting anything done (crashing at start: bad settings, an unreachable
        # broker) or that stall are restarted with a growing delay.
        if self._progressed_since_start():
            self.futile_restarts = 0
        elif not killed:
            self.futile_restarts += 1
        now = timezone.now()
        self.restart_times = [*restarts_in_last_hour(self.restart_times, now), now.isoformat()]
        self.restarts_total += 1
        with contextlib.suppress(*DATABASE_LOST):
            self._write(
                state="restarting", reason=reason, restart_times=self.restart_times,
                restarts_total=self.restarts_total,
            )  # fmt: skip
        self.stop_cluster(graceful=False)
        # Its workers are gone: the sweep recovers their runs now (not when leases expire)
        # and frees their drain slots; drain messages its pusher had taken are sent again.
        self._sweep(reconcile=True)
        with contextlib.suppress(*DATABASE_LOST):
            self._resend_drains(at_once=True)
        delay = 0.0 if killed else restart_delay(self.futile_restarts)
        if delay:
            logger.warning("watchdog %s: waiting %.0fs before the next start", self.name, delay)
            self._sleep(delay)
        if not self.stopping:
            self.start_cluster()

    def _progressed_since_start(self) -> bool:
        try:
            progress = (
                WorkerCluster.objects.filter(name=self.name)
                .values_list("last_progress_at", flat=True)
                .first()
            )
        except DATABASE_LOST:
            return True  # cannot tell: do not hold the cluster back
        started = self.cluster_started
        return progress is not None and (started is None or progress >= started)

    # --- the row -------------------------------------------------------------------

    def _register(self) -> None:
        WorkerCluster.objects.update_or_create(
            name=self.name,
            defaults={
                "host": socket.gethostname(), "watchdog_pid": os.getpid(), "workers": self.workers,
                "state": "starting", "reason": "", "started_at": timezone.now(),
                "heartbeat_at": timezone.now(), "stopped_at": None, "restart_times": [],
                "restarts_total": 0,
            },
        )  # fmt: skip

    def _write(self, **fields) -> None:
        fields.setdefault("heartbeat_at", timezone.now())
        WorkerCluster.objects.filter(name=self.name).update(**fields)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies answer signals too: only count processes that still run.
    import psutil

    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False
