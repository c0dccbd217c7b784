"""Two clusters (standing for two machines) under ``run_workers`` share the drains.

django-q2's pusher fetches messages ahead of its workers, so the first cluster to poll
can swallow every drain message while the other's workers idle. A message that waits
untaken is sent again (``slots.resend_waiting_drains``, each watchdog's tick) and the
idle cluster runs it: no restart, no lost capacity, each effect once.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import psutil
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from django_q.models import OrmQ
from django_tenants.utils import schema_context

from orchestration.models import Batch, JobRun
from orchestration.services import JobSpec, batch_create
from tenants.models import DrainSlot, QueueCluster, WorkerCluster
from tests.e2e.conftest import wait_for
from tests.engine_providers import MARKETPLACE, ledger_entries, set_faults

# The stall rule at 10 s (judged after 30 s for a cluster that has not worked yet): a
# one-second pause of a cluster is not a stall. Drains of 60 s: without a resend, a
# message the busy cluster fetched ahead would wait that long in its local queue.
WATCHED = ("run_workers", "--stall-seconds", "10", "--sweep-seconds", "1", "--stop-grace", "5")
SETTINGS = {"DRAIN_SECONDS": 60, "RETRY_BASE_SECONDS": 0.05, "RETRY_MAX_SECONDS": 0.2}
JOBS = 40


def _qcluster(watchdog_pid: int) -> psutil.Process:
    (qcluster,) = psutil.Process(watchdog_pid).children()
    return qcluster


def _workers(watchdog_pid: int) -> set[int]:
    """The pids of the cluster's processes under its sentinel (workers, monitor, pusher)."""
    try:
        (sentinel,) = _qcluster(watchdog_pid).children()
        return {p.pid for p in sentinel.children()}
    except (ValueError, psutil.NoSuchProcess):
        return set()


def _public():
    connection.set_schema_to_public()


def _workers_seen() -> int:
    _public()
    return QueueCluster.objects.aggregate(n=Sum("workers"))["n"] or 0


def _every_message_taken() -> bool:
    """All four drain messages left the broker (the busy cluster's pusher holds two ahead)."""
    _public()
    slots = list(DrainSlot.objects.values_list("holder", flat=True))
    held = [h for h in slots if h not in ("", "queued")]
    waiting = OrmQ.objects.filter(lock__lte=timezone.now()).exists()  # in the broker
    return len(slots) == 4 and len(held) == 2 and not waiting


def _ran_in(pids: set[int], batch: Batch) -> int:
    with schema_context("test_alpha"):
        workers = JobRun.objects.filter(job__batch=batch).values_list("worker", flat=True)
        return sum(1 for w in workers if int(w.rsplit(":", 1)[-1]) in pids)


def test_a_drain_message_a_busy_cluster_fetched_ahead_runs_in_the_idle_one(
    tx_tenant_a, start_cluster, tmp_path
):
    params = {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "faults.json")}
    set_faults(params["faults"], {"step2": {"mode": "sleep", "seconds": 0.5, "times": 1000}})
    busy = start_cluster(workers=2, command=WATCHED, **SETTINGS)
    idle = start_cluster(workers=2, command=WATCHED, **SETTINGS)
    for cluster in (busy, idle):
        wait_for(lambda c=cluster: len(_workers(c.proc.pid)) == 4, what="a cluster's processes")
    # Both clusters' workers are counted: four drain slots.
    wait_for(lambda: _workers_seen() == 4, what="both clusters registered")
    idle_pids = _workers(idle.proc.pid)

    # The idle cluster's whole qcluster group pauses while the batch is queued, so the busy
    # cluster's pusher takes every drain message: two run, two wait in its local queue.
    paused = _qcluster(idle.proc.pid).pid
    os.killpg(paused, signal.SIGSTOP)
    try:
        with schema_context("test_alpha"):
            specs = [JobSpec(marketplace=MARKETPLACE, action="three", params=params)] * JOBS
            batch = batch_create(name="two clusters", jobs=specs)
        wait_for(_every_message_taken, timeout=30, what="the busy cluster to take all four")
    finally:
        os.killpg(paused, signal.SIGCONT)

    # Liveness bound far below the drains' 60 s: the messages come back within seconds.
    wait_for(lambda: _ran_in(idle_pids, batch), timeout=20, what="a job run by the idle cluster")

    def done() -> bool:
        with schema_context("test_alpha"):
            batch.refresh_from_db()
        return batch.status == Batch.Status.COMPLETED

    wait_for(done, timeout=90, what="the batch to complete")
    _public()
    rows = list(WorkerCluster.objects.values_list("restarts_total", "reason"))
    assert len(rows) == 2 and all(restarts == 0 for restarts, _ in rows), rows
    effects = Counter(e["key"] for e in ledger_entries(params["ledger"]))
    assert len(effects) == JOBS * 3 and set(effects.values()) == {1}
