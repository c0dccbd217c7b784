"""Invariants that had no test able to catch their loss (issue 10): each test here was seen
red with its mechanism broken on purpose (see the issue note for which).

- in-step lease renewal under a running recovery sweep (invariant 5);
- a real claim race: threads on their own connections released by a barrier (5, 7);
- the dispatcher path: a drifted running count, healed on the watchdog's schedule (5);
- cancellation of a step that ignores it, of a RETRYING job, of a job in backoff (6);
- tenant sealing inside one worker process, across tenants and drains (9).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration.engine import dispatch
from orchestration.engine.advance import task_start
from orchestration.engine.claims import claim_jobs, resource_policies
from orchestration.engine.execute import job_execute_now, run_available_jobs
from orchestration.engine.recovery import sweep_all_tenants
from orchestration.models import JobRun, MarketplaceJob
from orchestration.services import job_cancel, job_create
from orchestration.watchdog import Watchdog, WatchdogConfig
from tenants.models import TenantQueue, WorkerCluster
from tests import invariant_providers
from tests.engine_providers import BRIDGE, MARKETPLACE, ledger_entries, set_faults


@pytest.fixture
def extra_providers():
    invariant_providers.register()
    invariant_providers.started.clear()
    invariant_providers.proceed.clear()
    yield invariant_providers
    invariant_providers.proceed.set()  # never leave a step thread waiting
    invariant_providers.unregister()


def _statuses(job: MarketplaceJob) -> list[str]:
    return list(job.tasks.order_by("step_order").values_list("status", flat=True))


def _in_thread(schema: str, call: Callable[[], object], out: dict) -> threading.Thread:
    """Run ``call`` on its own thread and database connection, in ``schema``."""

    def run() -> None:
        try:
            with schema_context(schema):
                out["result"] = call()
        except BaseException as exc:  # reported by the test
            out["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def _worker_session_restored():
    """A drain tunes its session (synchronous_commit, plan cache); undo it for later tests."""
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit; RESET plan_cache_mode")


# --- invariant 5: the heartbeat inside a step -----------------------------------------


def test_a_step_longer_than_the_lease_keeps_its_run_while_the_sweep_runs(
    tx_tenant_a, tmp_path, settings
):
    """The step (2.5 s) outlives the lease (1 s) several times over while another session
    sweeps for lost runs every 50 ms: the heartbeat inside the step keeps the run alive."""
    lease = 1.0
    settings.ORCHESTRATION = {
        "LEASE_SECONDS": lease, "HEARTBEAT_SECONDS": 0.2, "CANCEL_POLL_SECONDS": 0.05,
        "RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01,
    }  # fmt: skip
    ledger, faults = tmp_path / "ledger.jsonl", tmp_path / "faults.json"
    set_faults(faults, {"step2": {"mode": "sleep", "seconds": 2.5, "times": 1}})
    job = job_create(
        marketplace=MARKETPLACE,
        action="three",
        params={"ledger": str(ledger), "faults": str(faults)},
    )
    stop = threading.Event()
    sweeps: list[tuple[float, dict]] = []

    def sweep_until_stopped() -> None:
        while not stop.is_set():
            sweeps.append((time.monotonic(), sweep_all_tenants(reconcile=False)))
            time.sleep(0.05)

    out: dict = {}
    sweeper = _in_thread("public", sweep_until_stopped, out)
    started = time.monotonic()
    try:
        outcome = job_execute_now(job_id=job.pk)
    finally:
        stop.set()
        sweeper.join(30)
    assert "error" not in out, out
    # The sweep really ran after the lease taken at the claim would have expired.
    assert [t for t, _ in sweeps if t > started + lease + 0.2], "the sweep never ran in time"
    assert [r["recovered"] for _, r in sweeps if r["recovered"]] == []

    assert outcome == "completed"
    job.refresh_from_db()
    assert (job.status, job.retry_count) == ("completed", 0)
    (run,) = JobRun.objects.filter(job=job)  # no extra run
    assert (run.status, run.attempt, run.error_kind, run.error_message) == ("completed", 1, "", "")
    keys = [entry["key"] for entry in ledger_entries(ledger)]
    assert len(keys) == len(set(keys)) == 3  # no duplicate effect


# --- invariants 5 and 7: a real claim race ---------------------------------------------

RACERS = 8


def _race(schema: str, call: Callable[[], list]) -> list:
    """``RACERS`` threads, each on its own connection (opened first), released together."""
    barrier = threading.Barrier(RACERS)
    results: list = []
    errors: list = []

    def racer() -> None:
        try:
            with schema_context(schema):
                connection.ensure_connection()
                barrier.wait(timeout=30)
                results.append(call())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(results) == RACERS
    return [claim for claimed in results for claim in claimed]


def test_racing_workers_claim_one_job_exactly_once(tx_tenant_a):
    job = job_create(marketplace=MARKETPLACE, action="one")  # no product: no per-key limit
    resource_policies()  # committed before the race: the claims must not meet on creating them

    claimed = _race(tx_tenant_a.schema_name, lambda: claim_jobs(limit=1))

    assert [c.job_id for c in claimed] == [job.pk]
    job.refresh_from_db()
    assert job.status == "running" and job.current_run_id == claimed[0].run_id
    assert JobRun.objects.count() == 1
    assert TenantQueue.objects.get(schema_name=tx_tenant_a.schema_name).active_runs == 1


def test_racing_workers_take_the_only_place_of_a_one_at_a_time_resource_once(tx_tenant_a):
    jobs = [job_create(marketplace=BRIDGE, action="one") for _ in range(RACERS)]
    assert all(job.concurrency_key == "" for job in jobs)  # only the resource limit applies
    policy = resource_policies()["testbridge"]
    assert policy.concurrency == 1

    claimed = _race(tx_tenant_a.schema_name, lambda: claim_jobs(limit=1))

    assert len(claimed) == 1, claimed
    assert MarketplaceJob.objects.filter(resource_key="testbridge", status="running").count() == 1
    assert JobRun.objects.count() == 1


# --- invariant 5: the dispatcher path ----------------------------------------------------


def test_a_drifted_running_count_is_healed_on_the_watchdogs_schedule_then_the_job_runs(
    tx_tenant_a, tmp_path, settings
):
    """The quick sweep only visits tenants whose running count says they have runs; the
    watchdog's slower pass (every ``reconcile`` seconds) visits every tenant, so a lost run
    hidden by a drifted count is recovered, and a drain then runs the job to the end."""
    settings.ORCHESTRATION = {
        "RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01, "DRAIN_SECONDS": 10,
        "WAKE_AHEAD_SECONDS": 1, "TENANT_TURN_SECONDS": 5,
    }  # fmt: skip
    ledger = tmp_path / "ledger.jsonl"
    job = job_create(marketplace=MARKETPLACE, action="three", params={"ledger": str(ledger)})
    (claim,) = claim_jobs(limit=1, worker="gone-host:1")
    task_start(claim, job.tasks.get(step_order=1), {}, first_write=True)
    JobRun.objects.filter(pk=claim.run_id).update(lease_expires_at=timezone.now())
    TenantQueue.objects.filter(schema_name="test_alpha").update(active_runs=0)  # drifted

    watchdog = Watchdog(WatchdogConfig(stall=60, sweep=5, reconcile=15))
    gone = subprocess.Popen(["true"])
    gone.wait()
    watchdog.proc = SimpleNamespace(poll=lambda: None, pid=gone.pid)  # "runs", no processes
    watchdog.cluster_started = timezone.now() - timedelta(seconds=60)
    WorkerCluster.objects.create(name=watchdog.name, host=socket.gethostname(), watchdog_pid=1)
    now = time.monotonic()
    watchdog.last_sweep, watchdog.last_reconcile = now - 6, now - 1  # a quick sweep is due
    assert watchdog.tick() is None
    with schema_context("test_alpha"):  # (the watchdog works in the public schema)
        assert JobRun.objects.get(pk=claim.run_id).status == "running"  # hidden from it

    watchdog.last_sweep, watchdog.last_reconcile = now - 6, now - 16  # the slow pass is due
    assert watchdog.tick() is None
    with schema_context("test_alpha"):
        run = JobRun.objects.get(pk=claim.run_id)
        assert (run.status, run.error_kind) == ("failed", "worker_lost")
        assert MarketplaceJob.objects.get(pk=job.pk).status == "retrying"

    # The retry reaches a drain through the tenant's wake-up, like any other.
    with _worker_session_restored():
        connection.set_schema_to_public()
        assert dispatch.drain()["jobs"] == 1
    with schema_context("test_alpha"):
        job.refresh_from_db()
        assert job.status == "completed" and job.runs.count() == 2
    keys = [entry["key"] for entry in ledger_entries(ledger)]
    assert len(keys) == len(set(keys)) == 3
    assert TenantQueue.objects.get(schema_name="test_alpha").active_runs == 0


# --- invariant 6: cancellation -----------------------------------------------------------


def test_a_step_that_ignores_cancellation_stops_at_the_next_step_boundary(
    tx_tenant_a, tmp_path, settings, extra_providers
):
    settings.ORCHESTRATION = {"CANCEL_POLL_SECONDS": 0.02}
    ledger = tmp_path / "ledger.jsonl"
    job = job_create(
        marketplace=invariant_providers.STUBBORN, action="three", params={"ledger": str(ledger)}
    )
    out: dict = {}
    worker = _in_thread(tx_tenant_a.schema_name, lambda: job_execute_now(job_id=job.pk), out)
    assert extra_providers.started.wait(20), "the first step never started"

    job_cancel(job_id=job.pk)  # running: asked to stop
    assert MarketplaceJob.objects.filter(
        pk=job.pk, status="running", cancel_requested=True
    ).exists()
    extra_providers.proceed.set()  # the step goes on as if nothing happened, and ends
    worker.join(30)

    assert out.get("result") == "cancelled", out
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("cancelled", False)
    assert _statuses(job) == ["completed", "cancelled", "cancelled"]
    assert [e["key"].rsplit(":", 1)[1] for e in ledger_entries(ledger)] == ["ignores_cancel"]
    assert job.runs.get().status == "cancelled"


@pytest.mark.parametrize("backoff", ["in backoff", "due"])
def test_cancelling_a_retrying_job_cancels_it_at_once_and_no_claim_takes_it(
    engine, settings, backoff
):
    settings.ORCHESTRATION = {"RETRY_BASE_SECONDS": 60, "RETRY_MAX_SECONDS": 120}
    set_faults(engine.faults, {"step2": {"mode": "retryable", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    assert job_execute_now(job_id=job.pk) == "retrying"
    job.refresh_from_db()
    assert job.run_after > timezone.now() + timedelta(seconds=20)  # waiting for its retry
    if backoff == "due":
        MarketplaceJob.objects.filter(pk=job.pk).update(run_after=timezone.now())

    cancelled = job_cancel(job_id=job.pk)

    assert (cancelled.status, cancelled.cancel_requested) == ("cancelled", False)
    assert _statuses(job) == ["completed", "cancelled", "cancelled"]
    assert engine.recorder.of_type("job_status")[-1].status == "cancelled"
    # Its backoff ends: still nothing takes it.
    MarketplaceJob.objects.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(hours=1))
    assert claim_jobs(limit=8) == []
    assert job_execute_now(job_id=job.pk) is None
    assert run_available_jobs() == 0
    assert MarketplaceJob.objects.get(pk=job.pk).status == "cancelled"
    assert job.runs.count() == 1
    assert [e["key"].rsplit(":", 1)[1] for e in ledger_entries(engine.ledger)] == ["step1"]


# --- invariant 9: tenants are sealed inside a worker process -----------------------------


def test_two_tenants_jobs_in_one_worker_each_see_and_write_only_their_schema(
    tx_tenant_a, tx_tenant_b, tmp_path, extra_providers
):
    """Drains in this process run a job of each tenant back to back (one drain serving
    both, then another drain): each step runs in its job's schema, sees only its tenant's
    rows and writes only there."""
    from marketplaces.models import Product

    record = tmp_path / "record.jsonl"

    def make_job(schema: str) -> int:
        with schema_context(schema):
            Product.objects.get_or_create(
                sku=f"{schema}-product", defaults={"title": schema, "price": "1.00"}
            )
            job = job_create(
                marketplace=invariant_providers.SEAL, action="peek",
                params={"tenant": schema, "record": str(record)},
            )  # fmt: skip
            return job.pk

    jobs = {"test_alpha": [make_job("test_alpha")], "test_beta": [make_job("test_beta")]}
    with _worker_session_restored():
        connection.set_schema_to_public()
        first = dispatch.drain()
        jobs["test_alpha"].append(make_job("test_alpha"))  # then the other tenant's turn again
        connection.set_schema_to_public()
        second = dispatch.drain()
    assert set(first["tenants"]) == {"test_alpha", "test_beta"} and first["jobs"] == 2
    assert second["tenants"] == ["test_alpha"] and second["jobs"] == 1

    records = ledger_entries(record)
    assert sorted(r["tenant"] for r in records) == ["test_alpha", "test_alpha", "test_beta"]
    for schema, job_ids in jobs.items():
        with schema_context(schema):
            for job in MarketplaceJob.objects.filter(pk__in=job_ids):
                assert job.status == "completed", (schema, job.pk, job.error_message)
                for task in job.tasks.all():  # both steps, before and after a step boundary
                    assert task.output["schema"] == schema
                    assert all(sku.startswith((f"{schema}-", f"written-by-{schema}-"))
                               for sku in task.output["seen"]), task.output  # fmt: skip
            written = set(
                Product.objects.filter(sku__startswith="written-by-").values_list("sku", flat=True)
            )
            assert written == {f"written-by-{schema}-{pk}" for pk in job_ids}
