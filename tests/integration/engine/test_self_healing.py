"""Self-healing inside the engine (issue: self-healing workers): wake-ups that cannot be
lost, a sweep no tenant can stop, runs of dead workers recovered without waiting for their
lease (and without counting an attempt when no step started), a drain that keeps its time
bound and survives one bad job, stale drain messages, and the watchdog's stall verdict."""

from __future__ import annotations

import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration.engine import dispatch, marks, slots
from orchestration.engine.advance import task_start
from orchestration.engine.claims import claim_jobs
from orchestration.engine.execute import execute_claims
from orchestration.engine.executor import StepExecutor
from orchestration.engine.recovery import recover_lost_runs, sweep_all_tenants
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from orchestration.services import job_create
from orchestration.watchdog import Watchdog, WatchdogConfig
from tenants.models import DrainSlot, QueueCluster, TenantQueue, WorkerCluster
from tests.engine_providers import MARKETPLACE, ledger_entries, set_faults


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _queue(schema: str = "test_alpha") -> TenantQueue | None:
    return TenantQueue.objects.filter(schema_name=schema).first()


def test_the_ready_mark_commits_with_the_jobs_that_made_it(engine):
    TenantQueue.objects.filter(schema_name="test_alpha").delete()
    with transaction.atomic():
        job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
        # Written in the enqueuing transaction, not by an on-commit callback that a process
        # dying right after the commit would never run.
        assert _queue() is not None and _queue().ready_at is not None

    TenantQueue.objects.filter(schema_name="test_alpha").delete()
    with pytest.raises(RuntimeError), transaction.atomic():
        job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
        raise RuntimeError("rolled back")
    assert _queue() is None  # nothing announced for jobs that do not exist


def test_the_sweep_marks_a_tenant_whose_wake_up_was_lost(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    TenantQueue.objects.filter(schema_name="test_alpha").update(ready_at=None)

    result = sweep_all_tenants()

    assert "test_alpha" in result["reconciled"]
    assert _queue().ready_at is not None
    assert marks.pick_tenant()[0] == "test_alpha"
    # A job waiting for its backoff gets the wake-up it is owed, no earlier.
    later = timezone.now() + timedelta(minutes=5)
    with schema_context("test_alpha"):
        MarketplaceJob.objects.filter(pk=job.pk).update(status="retrying", run_after=later)
    TenantQueue.objects.filter(schema_name="test_alpha").update(ready_at=None, next_wake_at=None)
    assert "test_alpha" not in sweep_all_tenants()["reconciled"]
    queue = _queue()
    assert queue.ready_at is None and queue.next_wake_at == later


def test_the_slow_pass_reconciles_a_slice_of_the_tenants_in_turn(engine, tenant_b, settings):
    from tenants.models import Tenant

    # Both tenants' wake-ups were lost; each pass may visit one tenant.
    tenants = Tenant.objects.exclude(schema_name="public")
    schemas = sorted(tenants.values_list("schema_name", flat=True))
    assert schemas == ["test_alpha", "test_beta"]
    for schema in schemas:
        with schema_context(schema):
            job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    TenantQueue.objects.update(ready_at=None, swept_at=None)
    settings.ORCHESTRATION = {**settings.ORCHESTRATION, "SWEEP_TENANTS": 1}

    assert sweep_all_tenants()["reconciled"] == ["test_alpha"]  # never visited: by name
    assert sweep_all_tenants()["reconciled"] == ["test_beta"]
    TenantQueue.objects.update(ready_at=None)
    assert sweep_all_tenants(reconcile=False)["reconciled"] == []  # the quick pass: none
    # Then the one visited least recently.
    assert sweep_all_tenants()["reconciled"] == ["test_alpha"]
    assert sweep_all_tenants()["reconciled"] == ["test_beta"]


def test_one_failing_tenant_does_not_stop_the_sweep_for_the_others(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    (claim,) = claim_jobs(limit=1, worker="gone-host:1")
    task_start(claim, job.tasks.get(step_order=1), {}, first_write=True)
    JobRun.objects.filter(pk=claim.run_id).update(lease_expires_at=timezone.now())
    # A tenant row whose schema is missing: its recovery raises. Sorted first on purpose.
    TenantQueue.objects.create(schema_name="aaa_missing_schema", active_runs=1)

    result = sweep_all_tenants(reconcile=False)

    assert result["recovered"] == {"test_alpha": 1}
    assert "aaa_missing_schema" in result["errors"]
    connection.set_schema_to_public()


def test_runs_of_a_dead_local_worker_are_recovered_without_waiting_for_their_lease(engine):
    started, unstarted = (
        job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
        for _ in range(2)
    )
    gone = f"{socket.gethostname()}:{_dead_pid()}"
    first, second = claim_jobs(limit=2, worker=gone)
    assert (first.job_id, second.job_id) == (started.pk, unstarted.pk)
    task_start(first, started.tasks.get(step_order=1), {}, first_write=True)
    # Leases still valid for a minute: only the dead process tells the sweep.
    alive = claim_jobs(limit=1, worker=f"{socket.gethostname()}:1")  # nothing left to claim
    assert alive == []

    assert recover_lost_runs() == 2

    started.refresh_from_db()
    run = JobRun.objects.get(pk=first.run_id)
    assert (run.status, run.error_kind) == ("failed", "worker_lost")
    assert "exited" in run.error_message
    assert (started.status, started.retry_count) == ("retrying", 1)
    # The one that never started a step was handed back: no attempt counted, no run kept.
    unstarted.refresh_from_db()
    assert (unstarted.status, unstarted.retry_count, unstarted.current_run_id) == (
        "queued",
        0,
        None,
    )
    assert not JobRun.objects.filter(pk=second.run_id).exists()
    assert set(MarketplaceTask.objects.filter(job=unstarted).values_list("status", flat=True)) == {
        "pending"
    }


def test_a_live_workers_runs_are_left_alone(engine):
    job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    claim_jobs(limit=1)  # this process: alive, lease valid
    assert recover_lost_runs() == 0


def test_a_drain_starts_no_claimed_job_after_its_deadline(engine):
    # The first job must start before the deadline however loaded the machine (1.5 s for
    # one claim), and its step outlasts it.
    set_faults(engine.faults, {"step1": {"mode": "sleep", "seconds": 2, "times": 1}})
    jobs = [
        job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
        for _ in range(3)
    ]
    # Unknown pace: one job first (2 s, past the deadline), then the rest in one claim.
    executor = StepExecutor()
    now = time.monotonic()
    try:
        served = dispatch.serve_tenant(
            "test_alpha", 0, until=now + 10, executor=executor, deadline=now + 1.5
        )
    finally:
        executor.close()
    assert served == 1
    for job in jobs[1:]:  # handed back unclaimed: QUEUED, no attempt counted, no run left
        job.refresh_from_db()
        assert (job.status, job.retry_count, job.runs.count()) == ("queued", 0, 0)
    assert MarketplaceJob.objects.get(pk=jobs[0].pk).status == "completed"


def test_an_engine_error_in_one_claim_fails_that_run_and_the_others_run(engine):
    broken, fine = (
        job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
        for _ in range(2)
    )
    # A task the engine cannot start (the state a bad resume once left behind).
    MarketplaceTask.objects.filter(job=broken, step_order=1).update(status="cancelled")
    claimed = claim_jobs(limit=2)
    executor = StepExecutor()
    try:
        assert execute_claims(claimed, executor=executor) == (2, [])
    finally:
        executor.close()

    broken.refresh_from_db()
    run = broken.runs.get()
    assert broken.status == "failed" and run.error_kind == "internal"
    assert "internal error" in broken.error_message and "ForbiddenTransition" in run.traceback
    assert MarketplaceJob.objects.get(pk=fine.pk).status == "completed"
    assert len(ledger_entries(engine.ledger)) == 3  # the fine job's three effects


def test_a_stale_drain_message_does_nothing(tenant_a):
    connection.set_schema_to_public()
    slot = DrainSlot.objects.create()
    with transaction.atomic():
        slots._queue_drain(slot.pk, timezone.now() - timedelta(seconds=30))
    old_token = DrainSlot.objects.get(pk=slot.pk).token
    assert slots.resend_waiting_drains(at_once=True) == 1
    slot.refresh_from_db()
    assert slot.holder == "queued" and slot.token not in ("", old_token)

    assert dispatch.drain(slot.pk, old_token)["stale"] is True
    slot.refresh_from_db()
    assert slot.holder == "queued"  # still waiting for the message with the new token


def test_an_untaken_drain_message_is_sent_again_less_and_less_often(tenant_a):
    from django_q.models import OrmQ

    connection.set_schema_to_public()
    slot = DrainSlot.objects.create()
    queued = timezone.now()
    with transaction.atomic():
        slots._queue_drain(slot.pk, queued)
    tokens = [DrainSlot.objects.get(pk=slot.pk).token]
    messages = OrmQ.objects.count()

    def resend_after(seconds: float) -> int:
        return slots.resend_waiting_drains(now=queued + timedelta(seconds=seconds))

    # Sent at 0 s: again at 2 s, then 4 s and 8 s later (at 6 s and 14 s), never sooner.
    assert [resend_after(s) for s in (1.9, 2.0, 5.9, 6.0, 13.9, 14.0)] == [0, 1, 0, 1, 0, 1]
    slot.refresh_from_db()
    assert slot.sends == 4 and slot.token not in tokens and OrmQ.objects.count() == messages + 3
    # The stall rule still sees how long the slot has waited: since its first message. Its
    # expiry moves with the resends (they are what a lost message needs).
    assert slot.queued_at == queued and slot.sent_at == queued + timedelta(seconds=14)
    assert slot.held_until == slot.sent_at + slots._slot_grace()
    # Never more than once a minute, however long it waits.
    assert slots.resend_interval(30) == slots.RESEND_MAX == timedelta(seconds=60)

    # The latest message starts its drain; the earlier ones find another token.
    assert slots.take_slot(slot.pk, tokens[0], "host:1") is False
    assert slots.take_slot(slot.pk, slot.token, "host:1") is True
    slot.refresh_from_db()
    assert (slot.sends, slot.sent_at, slot.queued_at) == (0, None, None)
    assert resend_after(600) == 0  # held, not waiting


def test_a_broker_that_fails_a_resend_does_not_stop_the_watchdog(
    tx_tenant_a, settings, monkeypatch, caplog
):
    from django_q.conf import Conf

    connection.set_schema_to_public()
    slot = DrainSlot.objects.create()
    with transaction.atomic():
        slots._queue_drain(slot.pk, timezone.now() - timedelta(seconds=30))
    token = DrainSlot.objects.get(pk=slot.pk).token
    # Redis as the broker, with nothing listening: the new message cannot be sent.
    settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:9/0")
    Watchdog(WatchdogConfig())._resend_drains()
    assert "sending drain messages again failed" in caplog.text
    slot.refresh_from_db()
    # Rolled back: the message already out keeps its token; the next tick tries again.
    assert (slot.holder, slot.token, slot.sends) == ("queued", token, 1)


def test_a_watchdog_keeps_its_cluster_counted_while_its_processes_live(tenant_a):
    connection.set_schema_to_public()
    watchdog = Watchdog(WatchdogConfig())
    watchdog.proc = subprocess.Popen(["sleep", "30"])  # stands for its qcluster's sentinel
    try:
        old = timezone.now() - slots.PRESENCE_HORIZON - timedelta(minutes=1)
        host = socket.gethostname()
        QueueCluster.objects.create(name=f"{host}:{watchdog.proc.pid}", workers=2, seen_at=old)
        QueueCluster.objects.create(name=f"{host}:999999", workers=2, seen_at=old)  # not its own
        watchdog._register()
        watchdog.last_sweep = time.monotonic()  # this tick checks; no sweep
        assert watchdog.tick() is None
        slots.forget_presence()
        assert slots._workers_seen() == 2
    finally:
        watchdog.proc.kill()
        watchdog.proc.wait()


def _watchdog(started_ago: float) -> Watchdog:
    watchdog = Watchdog(WatchdogConfig(stall=5))
    watchdog.cluster_started = timezone.now() - timedelta(seconds=started_ago)
    WorkerCluster.objects.create(name=watchdog.name, host=socket.gethostname(), watchdog_pid=1)
    return watchdog


def test_the_watchdog_calls_a_cluster_stalled_when_a_drain_waits_without_progress(tenant_a):
    connection.set_schema_to_public()
    watchdog = _watchdog(started_ago=60)
    now = timezone.now()
    slot = DrainSlot.objects.create(holder="queued", queued_at=now - timedelta(seconds=2))
    assert watchdog.stall_reason() is None  # waiting 2 s: not yet

    DrainSlot.objects.filter(pk=slot.pk).update(queued_at=now - timedelta(seconds=8))
    assert "waited 8s" in watchdog.stall_reason()

    # Progress since the message was queued: the cluster works (another drain ran).
    WorkerCluster.objects.filter(name=watchdog.name).update(last_progress_at=now)
    assert watchdog.stall_reason() is None


def test_the_watchdog_gives_a_new_cluster_time_to_start(tenant_a):
    connection.set_schema_to_public()
    watchdog = _watchdog(started_ago=1)
    DrainSlot.objects.create(holder="queued", queued_at=timezone.now() - timedelta(seconds=60))
    assert watchdog.stall_reason() is None


def test_a_slow_start_is_not_a_stall_until_a_few_stall_periods(tenant_a):
    """A cluster that has not worked yet gets 3 stall periods (on a loaded machine a start can
    take longer than one); once it has worked, one period without progress is a stall."""
    connection.set_schema_to_public()
    watchdog = _watchdog(started_ago=12)  # stall = 5 s: past one period, within three
    DrainSlot.objects.create(holder="queued", queued_at=timezone.now() - timedelta(seconds=60))
    assert watchdog.stall_reason() is None
    watchdog.cluster_started = timezone.now() - timedelta(seconds=16)
    assert "waited" in watchdog.stall_reason()
    # A cluster that worked since its start and then stopped is judged after one period.
    watchdog.cluster_started = timezone.now() - timedelta(seconds=12)
    WorkerCluster.objects.filter(name=watchdog.name).update(
        last_progress_at=timezone.now() - timedelta(seconds=11)
    )
    DrainSlot.objects.update(queued_at=timezone.now() - timedelta(seconds=8))  # after it worked
    assert "waited 8s" in watchdog.stall_reason()


def test_a_drifted_running_count_does_not_hide_a_tenants_lost_runs(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    (claim,) = claim_jobs(limit=1, worker="gone-host:1")
    task_start(claim, job.tasks.get(step_order=1), {}, first_write=True)
    JobRun.objects.filter(pk=claim.run_id).update(lease_expires_at=timezone.now())
    TenantQueue.objects.filter(schema_name="test_alpha").update(active_runs=0)  # drifted

    assert sweep_all_tenants(reconcile=False)["recovered"] == {}  # the quick pass misses it
    assert sweep_all_tenants(reconcile=True)["recovered"] == {"test_alpha": 1}


def _restarts_without_processes(watchdog: Watchdog, monkeypatch) -> list[float]:
    """``restart`` without processes or a sweep; returns the list its waits are recorded in."""
    slept: list[float] = []
    monkeypatch.setattr(watchdog, "stop_cluster", lambda graceful: None)
    monkeypatch.setattr(watchdog, "_sweep", lambda reconcile: None)
    monkeypatch.setattr(watchdog, "_sleep", slept.append)
    return slept


def test_a_cluster_that_was_working_is_restarted_at_once_however_often(tenant_a, monkeypatch):
    """Kills of a working cluster (OOM killer) never hold it back; only clusters that get
    nothing done (crashing at start) are restarted with a growing delay."""
    connection.set_schema_to_public()
    watchdog = _watchdog(started_ago=30)
    slept = _restarts_without_processes(watchdog, monkeypatch)

    def start_cluster() -> None:
        watchdog.cluster_started = timezone.now() - timedelta(seconds=30)

    monkeypatch.setattr(watchdog, "start_cluster", start_cluster)
    for _ in range(10):  # each cluster did some work before it was killed
        WorkerCluster.objects.filter(name=watchdog.name).update(last_progress_at=timezone.now())
        watchdog.restart("killed")
    assert slept == []

    WorkerCluster.objects.filter(name=watchdog.name).update(last_progress_at=None)
    for _ in range(6):  # clusters that never get anything done
        watchdog.restart("exited at start")
    assert slept == [2.0, 4.0, 8.0]


def test_a_cluster_killed_while_it_starts_comes_back_at_once(tenant_a, monkeypatch):
    """Kills a few seconds apart land before a cluster has done anything (its start-up takes
    seconds): a signal is not a crash of its own, so no delay, and the crash-loop count is
    neither raised nor reset by it. A cluster ending by itself with nothing done still
    backs off (the chaos kill storm stalled 85 s when kills counted as crashes)."""
    connection.set_schema_to_public()
    watchdog = _watchdog(started_ago=2)
    slept = _restarts_without_processes(watchdog, monkeypatch)
    monkeypatch.setattr(watchdog, "start_cluster", lambda: None)
    WorkerCluster.objects.filter(name=watchdog.name).update(last_progress_at=None)

    for _ in range(10):
        watchdog.restart("the cluster process exited with code -9", killed=True)
    assert slept == []

    for _ in range(5):  # then it crashes by itself at start
        watchdog.restart("the cluster process exited with code 1")
    assert slept == [2.0, 4.0]
    watchdog.restart("the cluster process exited with code -9", killed=True)
    watchdog.restart("the cluster process exited with code 1")
    assert slept == [2.0, 4.0, 8.0]  # the kill between did not reset the count


def test_tick_tells_a_signal_from_an_exit(tenant_a, monkeypatch):
    connection.set_schema_to_public()
    watchdog = _watchdog(started_ago=2)
    seen: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        watchdog, "restart", lambda reason, killed=False: seen.append((reason, killed))
    )

    class _Exited:
        def __init__(self, code):
            self.code = code

        def poll(self):
            return self.code

    for code in (-9, 1, 0, -11, -6):  # SIGKILL from outside; SIGSEGV/SIGABRT are its own
        watchdog.proc = _Exited(code)
        watchdog.tick()
    assert [killed for _, killed in seen] == [True, False, False, False, False]
