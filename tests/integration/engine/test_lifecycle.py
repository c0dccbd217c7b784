"""Seed scenarios: creation, success flow, batches, cancellation, sequential groups, handoff."""

import time

import pytest

from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask
from orchestration.services import (
    JobError,
    batch_cancel,
    batch_create,
    batch_resume,
    job_cancel,
    job_create,
    job_execute_now,
    job_retry,
    run_available_jobs,
)
from orchestration.states import ForbiddenTransition
from tests.engine_providers import MARKETPLACE, ledger_entries, set_faults


def run_to_rest():
    """Run every runnable job, waiting out (tiny) retry backoffs, until nothing is left."""
    from orchestration.states import JOB_CLAIMABLE

    for _ in range(200):
        run_available_jobs()
        if not MarketplaceJob.objects.filter(status__in=JOB_CLAIMABLE).exists():
            return
        time.sleep(0.01)
    raise AssertionError("jobs never came to rest")


def test_create_job_with_tasks(engine):
    job = job_create(marketplace=MARKETPLACE, action="five", params=engine.params(), enqueue=False)
    assert job.status == MarketplaceJob.Status.PENDING
    tasks = list(job.tasks.order_by("step_order").values_list("step_order", "step_type", "status"))
    assert tasks == [(i, f"step{i}", "pending") for i in range(1, 6)]
    assert job.max_retries == 3 and job.retry_count == 0


def test_success_flow(engine):
    job = job_create(marketplace=MARKETPLACE, action="five", params=engine.params())
    assert job.status == MarketplaceJob.Status.QUEUED
    assert job_execute_now(job_id=job.pk) == "completed"
    job.refresh_from_db()
    assert job.status == MarketplaceJob.Status.COMPLETED
    assert job.started_at and job.completed_at and job.started_at <= job.completed_at
    for task in job.tasks.all():
        assert task.status == MarketplaceTask.Status.COMPLETED
        assert task.started_at <= task.completed_at
    progress = [(e.data["order"], e.status) for e in engine.recorder.of_type("task_progress")]
    assert progress == [(i, s) for i in range(1, 6) for s in ("running", "completed")]
    assert [e.status for e in engine.recorder.of_type("job_status")] == [
        "queued",
        "running",
        "completed",
    ]
    assert len(ledger_entries(engine.ledger)) == 5


def test_single_job_lifecycle_has_one_run(engine):
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    job_execute_now(job_id=job.pk)
    run = JobRun.objects.get(job=job)
    assert (run.attempt, run.retry_of_id, run.status, run.steps_completed) == (
        1,
        None,
        "completed",
        1,
    )
    assert run.finished_at >= run.started_at
    assert all(e.tenant == "test_alpha" for e in engine.recorder.events)


def test_a_claimed_run_starts_with_its_defaults_and_lease(engine):
    """The claim inserts runs in one statement; every column it does not set is the model's
    default, as an ORM-created run would have it."""
    from orchestration.engine.claims import claim_next_job

    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    claim = claim_next_job(worker="host:1")
    run = JobRun.objects.get(pk=claim.run_id)
    blank = JobRun(job=job, attempt=1, lease_expires_at=run.lease_expires_at)
    for field in ("status", "error_kind", "error_message", "traceback", "failed_step",
                  "steps_completed", "finished_at"):  # fmt: skip
        assert getattr(run, field) == getattr(blank, field), field
    assert (run.job_id, run.attempt, run.retry_of_id, run.worker) == (job.pk, 1, None, "host:1")
    assert run.started_at == run.heartbeat_at < run.lease_expires_at
    assert run.resource_key == job.resource_key != ""
    job.refresh_from_db()
    assert (job.status, job.current_run_id) == ("running", run.pk)


def test_batch_progress_0_33_66_100(engine):
    batch = batch_create(name="three", jobs=[engine.spec("one") for _ in range(3)])
    seen = [batch.progress_percent]
    for job in batch.jobs.order_by("pk"):
        job_execute_now(job_id=job.pk)
        batch.refresh_from_db()
        seen.append(batch.progress_percent)
    assert seen == [0, 33, 66, 100]
    assert batch.status == Batch.Status.COMPLETED and batch.completed_at is not None
    percents = [e.progress["percent"] for e in engine.recorder.of_type("batch_progress")]
    assert percents[0] == 0 and percents[-1] == 100 and 33 in percents and 66 in percents
    assert [e.status for e in engine.recorder.of_type("complete")] == ["completed"]
    assert all(
        e.batch_id == batch.pk and e.timestamp for e in engine.recorder.of_type("batch_progress")
    )


def test_cancellation_before_dispatch_never_executes(engine):
    job = job_create(marketplace=MARKETPLACE, action="five", params=engine.params())
    job_cancel(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job_execute_now(job_id=job.pk) is None
    assert run_available_jobs() == 0
    assert ledger_entries(engine.ledger) == []
    assert set(job.tasks.values_list("status", flat=True)) == {"cancelled"}
    assert not JobRun.objects.filter(job=job).exists()


def test_cancel_of_a_finished_job_is_refused_and_changes_nothing(engine):
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    job_execute_now(job_id=job.pk)
    with pytest.raises(JobError, match="nothing to cancel"):
        job_cancel(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "completed"


def test_forbidden_transition_raises_and_changes_nothing(engine):
    from django.db import transaction

    from orchestration.engine import transitions

    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params(), enqueue=False)
    with pytest.raises(ForbiddenTransition), transaction.atomic():
        transitions.transition(
            MarketplaceJob, job.pk, "completed", error_message="should not stick"
        )
    job.refresh_from_db()
    assert job.status == "pending" and job.error_message == ""


def test_staff_retry_of_a_running_or_completed_job_is_refused(engine):
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    job_execute_now(job_id=job.pk)
    with pytest.raises(JobError, match="only failed or cancelled"):
        job_retry(job_id=job.pk)


def test_step_context_handoff(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    job_execute_now(job_id=job.pk)
    tasks = {t.step_type: t for t in job.tasks.all()}
    assert tasks["step1"].input == {}
    assert tasks["step2"].input == {"step1": tasks["step1"].output}
    assert tasks["step3"].input == {"step1": tasks["step1"].output, "step2": tasks["step2"].output}
    assert tasks["step3"].output["saw"] == ["step1", "step2"]
    job.refresh_from_db()
    assert job.result["step2"]["remote_id"] == f"step2-{job.pk}"


def test_retry_resumes_with_the_stored_output(engine):
    set_faults(engine.faults, {"step3": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    job_retry(job_id=job.pk)
    job_execute_now(job_id=job.pk)
    step3 = job.tasks.get(step_type="step3")
    assert step3.status == "completed"
    assert set(step3.input) == {"step1", "step2"}  # from the first run's committed outputs
    assert [e["key"].split(":")[-1] for e in ledger_entries(engine.ledger)] == [
        "step1",
        "step2",
        "step3",
    ]


def test_step_timeout_names_the_step_and_the_limit(engine):
    set_faults(engine.faults, {"slow": {"mode": "sleep", "seconds": 3, "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="slow", params=engine.params(), max_retries=0)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "'slow'" in job.error_message and "0.5s" in job.error_message
    run = job.runs.get()
    assert run.error_kind == "timeout" and run.failed_step == "slow"
    assert job.tasks.get(step_type="prepare").status == "completed"
    assert job.tasks.get(step_type="finish").status == "pending"


def test_sequential_group_runs_in_order(engine):
    batch = batch_create(
        name="group", mode=Batch.Mode.SEQUENTIAL, jobs=[engine.spec("one") for _ in range(3)]
    )
    statuses = list(batch.jobs.order_by("sequence").values_list("status", flat=True))
    assert statuses == ["queued", "pending", "pending"]
    run_to_rest()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    order = [int(e["key"].split(":")[1]) for e in ledger_entries(engine.ledger)]
    assert order == list(batch.jobs.order_by("sequence").values_list("pk", flat=True))


def test_sequential_group_stops_on_failure_then_resumes(engine):
    batch = batch_create(
        name="group", mode=Batch.Mode.SEQUENTIAL, jobs=[engine.spec("one") for _ in range(3)]
    )
    first = batch.jobs.order_by("sequence").first()
    job_execute_now(job_id=first.pk)
    set_faults(engine.faults, {"only": {"mode": "permanent", "times": 1}})
    run_to_rest()
    batch.refresh_from_db()
    statuses = list(batch.jobs.order_by("sequence").values_list("status", flat=True))
    assert statuses == ["completed", "failed", "skipped"]
    assert batch.status == Batch.Status.PARTIAL and batch.progress_percent == 100
    assert [e.status for e in engine.recorder.of_type("complete")] == ["partial"]

    batch_resume(batch_id=batch.pk)
    assert list(batch.jobs.order_by("sequence").values_list("status", flat=True)) == [
        "completed", "queued", "pending",
    ]  # fmt: skip
    run_to_rest()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    assert (batch.completed_jobs, batch.failed_jobs, batch.skipped_jobs) == (3, 0, 0)


def test_batch_cancel_cancels_waiting_jobs_and_keeps_completed(engine):
    batch = batch_create(name="big", jobs=[engine.spec("one") for _ in range(4)])
    first = batch.jobs.order_by("pk").first()
    job_execute_now(job_id=first.pk)
    batch_cancel(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert sorted(batch.jobs.values_list("status", flat=True)) == ["cancelled"] * 3 + ["completed"]
    assert (batch.completed_jobs, batch.cancelled_jobs, batch.progress_percent) == (1, 3, 100)
    assert run_available_jobs() == 0
