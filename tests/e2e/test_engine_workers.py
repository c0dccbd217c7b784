"""The engine against a real django-q2 cluster: concurrency, cancellation, crash recovery."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from django.utils import timezone
from django_q.tasks import async_task

from orchestration.models import Batch, JobRun, MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_cancel, job_create
from tests.e2e.conftest import wait_for
from tests.engine_providers import MARKETPLACE, ledger_entries, set_faults

FAST = {
    "RETRY_BASE_SECONDS": 0.05,
    "RETRY_MAX_SECONDS": 0.2,
    "DRAIN_SECONDS": 5,
    "CANCEL_POLL_SECONDS": 0.05,
}


# docs/engine.md promises: a long step sees a cancel within CANCEL_POLL_SECONDS; a lost run
# is recorded within the lease + the sweep's interval (this test enqueues a sweep every
# second: the plain qcluster has no watchdog), then retried after its backoff. The bounds
# are generous (a busy 2-core machine), far below what a lost mechanism costs (a 600-s
# step, a sweep every minute).
CANCEL_BOUND = 2.0
CRASH = {"LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.3}
SWEEP_INTERVAL = 1.0
RECOVERY_BOUND = 3 * (CRASH["LEASE_SECONDS"] + SWEEP_INTERVAL + 0.2)
RETRY_BOUND = 5.0  # backoff (<= 0.2 s) + a drain picking the retry up


def _params(tmp_path):
    return {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "faults.json")}


def test_concurrent_execution_by_parallel_workers_loses_no_update(
    tx_tenant_a, start_cluster, tmp_path
):
    params = _params(tmp_path)
    jobs = [JobSpec(marketplace=MARKETPLACE, action="three", params=params) for _ in range(30)]
    start_cluster(workers=2, **FAST)
    batch = batch_create(name="parallel", jobs=jobs)

    def finished():
        batch.refresh_from_db()
        return batch.status == Batch.Status.COMPLETED

    wait_for(finished, timeout=120, what="the batch to complete")
    assert (batch.completed_jobs, batch.done_jobs, batch.progress_percent) == (30, 30, 100)
    assert MarketplaceJob.objects.filter(batch=batch, status="completed").count() == 30
    entries = ledger_entries(params["ledger"])
    effects = Counter(e["key"] for e in entries)
    assert len(effects) == 90 and set(effects.values()) == {1}  # each effect exactly once
    assert len({e["pid"] for e in entries}) == 2  # both workers took part
    assert JobRun.objects.filter(job__batch=batch).count() == 30


def test_cancellation_of_a_running_job_mid_step(tx_tenant_a, start_cluster, tmp_path):
    params = _params(tmp_path)
    set_faults(params["faults"], {"step2": {"mode": "sleep", "seconds": 600, "times": 1}})
    start_cluster(workers=2, **FAST)
    job = job_create(marketplace=MARKETPLACE, action="three", params=params)
    wait_for(
        lambda: job.tasks.filter(step_order=2, status="running").exists(),
        timeout=60,
        what="step 2 to run",
    )
    asked = timezone.now()
    job_cancel(job_id=job.pk)
    wait_for(
        lambda: MarketplaceJob.objects.get(pk=job.pk).status == "cancelled",
        timeout=30,  # far less than the step's 600 s: the step observed the cancel
        what="the running job to stop",
    )
    job.refresh_from_db()
    took = (job.completed_at - asked).total_seconds()
    assert took <= CANCEL_BOUND, f"the running step took {took:.2f} s to stop"
    statuses = list(job.tasks.order_by("step_order").values_list("status", flat=True))
    assert statuses == ["completed", "cancelled", "cancelled"]
    assert job.runs.get().status == "cancelled"
    assert [e["key"].split(":")[-1] for e in ledger_entries(params["ledger"])] == ["step1"]


def test_crash_recovery_after_kill_9(tx_tenant_a, start_cluster, tmp_path):
    params = _params(tmp_path)
    set_faults(params["faults"], {"step2": {"mode": "crash", "times": 1}})
    start_cluster(workers=2, **CRASH, **FAST)
    job = job_create(marketplace=MARKETPLACE, action="three", params=params)

    # The worker running step 2 kills itself with SIGKILL: its run stays RUNNING, lease expiring.
    first = wait_for(
        lambda: JobRun.objects.filter(job=job, attempt=1).first(), what="the first run"
    )
    wait_for(lambda: not set_faults_pending(params), what="the crash")
    wait_for(
        lambda: JobRun.objects.get(pk=first.pk).status == "failed" or _sweep_once(),
        timeout=60,
        interval=SWEEP_INTERVAL,
        what="the sweep to record the lost run",
    )
    wait_for(
        lambda: MarketplaceJob.objects.get(pk=job.pk).status == "completed",
        timeout=60,
        what="the retry",
    )

    runs = list(job.runs.order_by("attempt"))
    job.refresh_from_db()
    # The worker died right after step 1's effect (its ledger time) as step 2 began.
    crashed = datetime.fromtimestamp(
        next(e["t"] for e in ledger_entries(params["ledger"]) if e["key"].endswith(":step1")),
        tz=UTC,
    )
    recorded = (runs[0].finished_at - crashed).total_seconds()
    assert recorded <= RECOVERY_BOUND, f"the lost run was recorded after {recorded:.1f} s"
    retried = (job.completed_at - runs[0].finished_at).total_seconds()
    assert retried <= RETRY_BOUND, f"the retry completed {retried:.1f} s after the loss"
    assert runs[0].status == "failed" and runs[0].error_kind == "worker_lost"
    assert "worker lost" in runs[0].error_message
    assert runs[-1].status == "completed" and runs[-1].retry_of_id == runs[-2].pk
    effects = Counter(e["key"].split(":")[-1] for e in ledger_entries(params["ledger"]))
    assert effects == {"step1": 1, "step2": 1, "step3": 1}


def set_faults_pending(params) -> bool:
    import json
    from pathlib import Path

    faults = json.loads(Path(params["faults"]).read_text() or "{}")
    return faults.get("step2", {}).get("times", 0) > 0


def _sweep_once() -> bool:
    """Enqueue the recovery sweep in the cluster (what the q2 schedule does each minute)."""
    async_task("orchestration.tasks.sweep")
    return False
