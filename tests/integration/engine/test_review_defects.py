"""Engine defects found by a code review, one scenario each (sequential groups, cancel, run now).

Every test here failed before its fix.
"""

import pytest

from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.services import (
    JobError,
    batch_cancel,
    batch_create,
    batch_resume,
    claim_next_job,
    execute_claim,
    job_cancel,
    job_create,
    job_execute_now,
    job_retry,
    job_run_now,
)
from orchestration.states import BATCH_TERMINAL
from tests.engine_providers import MARKETPLACE, set_faults
from tests.integration.engine.test_lifecycle import run_to_rest

ACTIVE = ("queued", "retrying", "running")


def _group(engine, n: int = 3) -> tuple[Batch, list[MarketplaceJob]]:
    batch = batch_create(
        name="group", mode=Batch.Mode.SEQUENTIAL, jobs=[engine.spec("one") for _ in range(n)]
    )
    return batch, list(batch.jobs.order_by("sequence"))


def _statuses(batch: Batch) -> list[str]:
    return list(batch.jobs.order_by("sequence").values_list("status", flat=True))


def _active(batch: Batch) -> int:
    return batch.jobs.filter(status__in=ACTIVE).count()


# --- 2. resuming a cancelled sequential group puts its tasks back in line too -------------


def test_resume_of_a_cancelled_sequential_group_resets_the_jobs_tasks(engine):
    batch, (first, _second, third) = _group(engine)
    job_execute_now(job_id=first.pk)  # completes; the second is enqueued
    batch_cancel(batch_id=batch.pk)
    assert _statuses(batch) == ["completed", "cancelled", "cancelled"]

    batch_resume(batch_id=batch.pk)
    assert _statuses(batch) == ["completed", "queued", "pending"]
    # The job waiting in line has runnable tasks, not the cancelled ones of before.
    assert set(third.tasks.values_list("status", flat=True)) == {"pending"}
    assert set(first.tasks.values_list("status", flat=True)) == {"completed"}

    run_to_rest()
    batch.refresh_from_db()
    assert _statuses(batch) == ["completed"] * 3
    assert batch.status == Batch.Status.COMPLETED


# --- 3. a cancelled job of a sequential group ends the group, like a failure ---------------


def test_cancelling_the_queued_job_of_a_group_skips_the_rest_and_ends_the_batch(engine):
    batch, _jobs = _group(engine)
    job_cancel(job_id=_jobs[0].pk)
    batch.refresh_from_db()
    assert _statuses(batch) == ["cancelled", "skipped", "skipped"]
    assert batch.status in BATCH_TERMINAL and batch.progress_percent == 100
    assert (batch.cancelled_jobs, batch.skipped_jobs) == (1, 2)
    assert set(_jobs[1].tasks.values_list("status", flat=True)) == {"pending"}


def test_a_running_job_of_a_group_cancelled_at_its_step_boundary_ends_the_group(engine):
    batch, jobs = _group(engine)
    claim = claim_next_job()
    assert claim is not None and claim.job_id == jobs[0].pk
    job_cancel(job_id=claim.job_id)  # running: flagged, stops at its next step boundary
    assert _statuses(batch) == ["running", "pending", "pending"]
    assert execute_claim(claim) == "cancelled"
    batch.refresh_from_db()
    assert _statuses(batch) == ["cancelled", "skipped", "skipped"]
    assert batch.status in BATCH_TERMINAL and batch.progress_percent == 100


def test_cancelling_a_later_job_of_a_group_skips_only_the_jobs_after_it(engine):
    batch, jobs = _group(engine, 4)
    job_cancel(job_id=jobs[2].pk)  # the first is queued, the second waits for it
    assert _statuses(batch) == ["queued", "pending", "cancelled", "skipped"]
    run_to_rest()
    batch.refresh_from_db()
    assert _statuses(batch) == ["completed", "completed", "cancelled", "skipped"]
    assert batch.status == Batch.Status.PARTIAL


def test_cancelling_a_whole_sequential_batch_still_cancels_its_waiting_jobs(engine):
    batch, _jobs = _group(engine)
    batch_cancel(batch_id=batch.pk)
    batch.refresh_from_db()
    assert _statuses(batch) == ["cancelled"] * 3
    assert batch.status == Batch.Status.CANCELLED and batch.skipped_jobs == 0


# --- 4. a sequential group never has two jobs queued or running -----------------------------


def _failed_group(engine) -> tuple[Batch, list[MarketplaceJob]]:
    set_faults(engine.faults, {"only": {"mode": "permanent", "times": 1}})
    batch, jobs = _group(engine)
    job_execute_now(job_id=jobs[0].pk)
    assert _statuses(batch) == ["failed", "skipped", "skipped"]
    return batch, jobs


def test_resuming_a_group_twice_is_refused_while_its_job_is_queued(engine):
    batch, _jobs = _failed_group(engine)
    batch_resume(batch_id=batch.pk)
    assert _statuses(batch) == ["queued", "pending", "pending"]
    with pytest.raises(JobError, match="still"):
        batch_resume(batch_id=batch.pk)
    assert _statuses(batch) == ["queued", "pending", "pending"]
    run_to_rest()
    assert _statuses(batch) == ["completed"] * 3


def test_resume_after_a_staff_retry_of_the_groups_job_is_refused(engine):
    batch, jobs = _failed_group(engine)
    job_retry(job_id=jobs[0].pk)  # (admin or dashboard): the failed job runs again
    with pytest.raises(JobError, match="still"):
        batch_resume(batch_id=batch.pk)
    assert _active(batch) == 1


def test_staff_retry_of_a_groups_job_while_another_is_queued_is_refused(engine):
    batch, jobs = _failed_group(engine)
    batch_resume(batch_id=batch.pk)  # the first job runs again; the others wait in line
    job_cancel(job_id=jobs[2].pk)  # a waiting job cancelled: retryable by staff
    assert _statuses(batch) == ["queued", "pending", "cancelled"]
    with pytest.raises(JobError, match="still"):
        job_retry(job_id=jobs[2].pk)
    with pytest.raises(JobError, match="still"):
        job_run_now(job_id=jobs[2].pk)
    assert _statuses(batch) == ["queued", "pending", "cancelled"]


# --- 9. a "run now" reservation ends with the job ---------------------------------------------


def _direct(job: MarketplaceJob) -> bool:
    return MarketplaceJob.objects.get(pk=job.pk).direct


def test_run_now_reservation_is_released_when_the_job_completes(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    job_run_now(job_id=job.pk)
    assert _direct(job)
    assert job_execute_now(job_id=job.pk) == "completed"
    assert not _direct(job)


def test_run_now_reservation_is_released_when_the_job_fails_for_good(engine):
    set_faults(engine.faults, {"step2": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    job_run_now(job_id=job.pk)
    assert job_execute_now(job_id=job.pk) == "failed"
    assert not _direct(job)
    job_retry(job_id=job.pk)  # a later staff retry does not jump the queue again
    assert not _direct(job)


def test_run_now_reservation_is_kept_while_retrying_and_released_when_cancelled(engine):
    set_faults(engine.faults, {"step2": {"mode": "retryable", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    job_run_now(job_id=job.pk)
    assert job_execute_now(job_id=job.pk) == "retrying"
    assert _direct(job)  # still reserved: it runs again as soon as its backoff ends
    job_cancel(job_id=job.pk)
    assert not _direct(job)


def test_run_now_reservation_is_released_when_a_running_job_is_cancelled(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    job_run_now(job_id=job.pk)
    claim = claim_next_job()
    assert claim is not None and claim.job_id == job.pk
    job_cancel(job_id=job.pk)
    assert execute_claim(claim) == "cancelled"
    assert not _direct(job)
    assert set(MarketplaceTask.objects.filter(job=job).values_list("status", flat=True)) == {
        "cancelled"
    }
