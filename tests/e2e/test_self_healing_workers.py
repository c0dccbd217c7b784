"""Workers that heal themselves (issue: self-healing workers), with real processes.

- kill -9 of idle django-q2 workers locks the cluster's task queue for good (django-q2
  #23): under ``manage.py run_workers`` the watchdog sees drains waiting with no
  progress, restarts the whole process group, and the batch completes;
- every database connection cut mid-batch (what a PostgreSQL restart does): drains wait
  for the database, hand back what they held and go on, long before any lease expires.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import psutil
from django.db import connection

from orchestration.models import Batch, MarketplaceJob
from orchestration.services import JobSpec, batch_create
from tenants.models import WorkerCluster
from tests.e2e.conftest import BASE_DIR, wait_for
from tests.engine_providers import MARKETPLACE, ledger_entries, set_faults

FAST = {"RETRY_BASE_SECONDS": 0.05, "RETRY_MAX_SECONDS": 0.2, "DRAIN_SECONDS": 5}
WATCHED = ("run_workers", "--stall-seconds", "3", "--sweep-seconds", "1", "--stop-grace", "5")


def _params(tmp_path):
    return {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "faults.json")}


def _cluster_row() -> WorkerCluster | None:
    connection.set_schema_to_public()
    return WorkerCluster.objects.order_by("-started_at").first()


def _sentinel_children(watchdog_pid: int) -> list[psutil.Process]:
    """qcluster (child of the watchdog) → sentinel → workers, monitor, pusher."""
    try:
        (qcluster,) = psutil.Process(watchdog_pid).children()
        (sentinel,) = qcluster.children()
        return sentinel.children()
    except (ValueError, psutil.NoSuchProcess):
        return []


def _workers_health() -> tuple[int, dict]:
    env = dict(os.environ, DATABASE_URL=_database_url())
    out = subprocess.run(
        [sys.executable, "manage.py", "workers_health", "--json"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out.returncode, json.loads(out.stdout)


def _database_url() -> str:
    from tests.helpers import database_url

    return database_url(connection.settings_dict)


def _batch_done(batch: Batch):
    def done() -> bool:
        connection.set_schema_to_public()
        with _tenant():
            batch.refresh_from_db()
        return batch.status == Batch.Status.COMPLETED

    return done


def _tenant():
    from django_tenants.utils import schema_context

    return schema_context("test_alpha")


def test_killed_idle_workers_do_not_stop_processing(tx_tenant_a, start_cluster, tmp_path):
    params = _params(tmp_path)
    cluster = start_cluster(workers=2, command=WATCHED, **FAST)
    assert cluster.proc is not None
    # Wait for the cluster to be up: two workers, the monitor and the pusher, idle.
    first = wait_for(
        lambda: len(children := _sentinel_children(cluster.proc.pid)) == 4 and children,
        timeout=60, what="the cluster's processes",
    )  # fmt: skip
    wait_for(lambda: (row := _cluster_row()) and row.state == "running", what="a running cluster")
    with _tenant():
        pass
    code, health = _workers_health()
    assert code == 0 and health["ok"], health

    # What the OOM killer does: kill -9 of idle workers. One of them holds the task queue's
    # lock while it waits, so without the watchdog nothing would ever run again.
    for process in first:
        os.kill(process.pid, signal.SIGKILL)
    with _tenant():
        jobs = [JobSpec(marketplace=MARKETPLACE, action="three", params=params) for _ in range(10)]
        batch = batch_create(name="after the kill", jobs=jobs)
    wait_for(_batch_done(batch), timeout=90, what="the batch to complete after the kill")

    row = _cluster_row()
    assert row.restarts_total >= 1 and "waited" in row.reason, (row.state, row.reason)
    # The old process group is gone entirely: no orphan of the blocked cluster is left.
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in first)
    effects = Counter(e["key"] for e in ledger_entries(params["ledger"]))
    assert len(effects) == 30 and set(effects.values()) == {1}
    code, health = _workers_health()
    assert code == 0, health
    assert health["clusters"][0]["restarts_last_hour"] >= 1

    cluster.stop()  # SIGTERM: the watchdog stops its cluster and says so
    code, health = _workers_health()
    assert code == 1 and not health["ok"]
    assert _cluster_row().state == "stopped"


def test_cut_database_connections_mid_batch_heal_well_before_any_lease_expires(
    tx_tenant_a, start_cluster, tmp_path
):
    params = _params(tmp_path)
    set_faults(params["faults"], {"step2": {"mode": "sleep", "seconds": 0.15, "times": 1000}})
    start_cluster(workers=2, command=WATCHED, LEASE_SECONDS=60, **FAST)
    wait_for(lambda: (row := _cluster_row()) and row.state == "running", what="a running cluster")
    with _tenant():
        jobs = [JobSpec(marketplace=MARKETPLACE, action="three", params=params) for _ in range(40)]
        batch = batch_create(name="through a restart", jobs=jobs)
        wait_for(
            lambda: MarketplaceJob.objects.filter(batch=batch, status="completed").count() >= 5,
            timeout=60, what="the batch to be under way",
        )  # fmt: skip
    # What a PostgreSQL restart does to every client: all connections cut at once.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 2
    # Liveness bound well below the 60-s lease: recovery must not wait for leases.
    wait_for(_batch_done(batch), timeout=45, what="the batch to complete after the cut")
    with _tenant():
        assert MarketplaceJob.objects.filter(batch=batch, status="completed").count() == 40
    effects = Counter(e["key"] for e in ledger_entries(params["ledger"]))
    assert len(effects) == 120 and set(effects.values()) == {1}  # nothing done twice
