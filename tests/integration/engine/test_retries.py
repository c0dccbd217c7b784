"""Retries are runs: skipping completed tasks, idempotence, backoff, exhaustion, chains, fencing."""

import itertools
from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from orchestration.engine.advance import task_advance, task_start
from orchestration.engine.claims import claim_jobs
from orchestration.engine.execute import execute_claim
from orchestration.engine.finish import finish_completed
from orchestration.engine.session import RunFenced
from orchestration.models import JobRun, MarketplaceJob
from orchestration.services import (
    claim_next_job,
    job_create,
    job_execute_now,
    job_retry,
    job_retry_from_step,
    recover_lost_runs,
)
from orchestration.states import ForbiddenTransition
from tests.engine_providers import MARKETPLACE, ledger_entries, set_faults
from tests.integration.engine.test_lifecycle import run_to_rest


def _steps_run(engine):
    return [e["key"].split(":")[-1] for e in ledger_entries(engine.ledger)]


def _statuses(job):
    return list(job.tasks.order_by("step_order").values_list("status", flat=True))


def test_retry_skips_completed_tasks(engine):
    set_faults(engine.faults, {"step4": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="five", params=engine.params())
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    assert _statuses(job) == ["completed"] * 3 + ["failed", "pending"]
    assert _steps_run(engine) == ["step1", "step2", "step3"]

    job_retry(job_id=job.pk)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "completed"
    assert _steps_run(engine) == [
        "step1",
        "step2",
        "step3",
        "step4",
        "step5",
    ]  # only 4 and 5 ran again
    second = job.runs.get(attempt=2)
    assert second.steps_completed == 2


def test_idempotence_effect_landed_but_job_failed_completes_without_a_second_effect(engine):
    # step2's effect is applied, then the response is lost; max_retries=0 makes the job FAILED.
    set_faults(engine.faults, {"step2": {"mode": "lost_response", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params(), max_retries=0)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "connection reset" in job.error_message
    assert _steps_run(engine) == ["step1", "step2"]

    job_retry(job_id=job.pk)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "completed"
    assert _steps_run(engine) == ["step1", "step2", "step3"]  # step2 not applied twice
    step2 = job.tasks.get(step_type="step2")
    assert step2.reused_existing is True
    assert step2.output["remote_id"] == f"step2-{job.pk}"


def test_partial_failure_recovery(engine):
    set_faults(engine.faults, {"step8": {"mode": "retryable", "times": 99}})
    job = job_create(marketplace=MARKETPLACE, action="ten", params=engine.params(), max_retries=0)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    assert _statuses(job) == ["completed"] * 7 + ["failed", "pending", "pending"]
    assert _steps_run(engine) == [f"step{i}" for i in range(1, 8)]

    set_faults(engine.faults, {})  # the API recovers
    job_retry(job_id=job.pk)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "completed"
    assert _steps_run(engine) == [f"step{i}" for i in range(1, 11)]
    assert job.runs.get(attempt=2).steps_completed == 3  # 8, 9, 10


BACKOFF = {"RETRY_BASE_SECONDS": 2, "RETRY_MAX_SECONDS": 900, "CANCEL_POLL_SECONDS": 0.02}


def _claim_at(moment) -> list:
    """``claim_jobs`` as a worker would run it at ``moment`` (no sleeping: the clock moves)."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        return claim_jobs(limit=1)


def _waits(job, attempt: int) -> float:
    """How long the job waits after its attempt ``attempt`` ended before it may run again."""
    job.refresh_from_db()
    return (job.run_after - job.runs.get(attempt=attempt).finished_at).total_seconds()


def test_retryable_error_retries_automatically_with_exponential_backoff(engine, settings):
    settings.ORCHESTRATION = BACKOFF  # base 2 s: retry n waits 2^n s jittered to 50-100 %
    set_faults(engine.faults, {"step2": {"mode": "retryable", "times": 2}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    (claim,) = claim_jobs(limit=1)
    outcome = execute_claim(claim)
    for attempt, (shortest, longest) in ((1, (1, 2)), (2, (2, 4))):
        assert outcome == "retrying"
        waits = _waits(job, attempt)
        assert (job.status, job.retry_count) == ("retrying", attempt)
        # (the policy reads the clock a few ms after the run's end: a little slack above)
        assert shortest <= waits <= longest + 0.5, (attempt, waits)
        # No claim takes it a moment before ``run_after`` …
        assert _claim_at(job.run_after - timedelta(milliseconds=1)) == []
        assert MarketplaceJob.objects.get(pk=job.pk).status == "retrying"
        # … and the first claim at ``run_after`` does.
        (claim,) = _claim_at(job.run_after)
        assert claim.job_id == job.pk
        outcome = execute_claim(claim)
    assert outcome == "completed"
    job.refresh_from_db()
    assert job.status == "completed" and job.retry_count == 2
    assert list(job.runs.order_by("attempt").values_list("status", flat=True)) == [
        "failed", "failed", "completed",
    ]  # fmt: skip
    retrying = engine.recorder.of_type("job_status")
    assert [e.data.get("retry") for e in retrying if e.status == "retrying"] == [1, 2]


def test_retry_after_is_the_shortest_wait(engine, settings):
    settings.ORCHESTRATION = BACKOFF
    set_faults(engine.faults, {"step1": {"mode": "retryable", "times": 1, "retry_after": 30}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    (claim,) = claim_jobs(limit=1)
    assert execute_claim(claim) == "retrying"
    waits = _waits(job, 1)
    assert 30 <= waits <= 30.5, waits  # not the 1-2 s the backoff alone would wait
    finished = job.runs.get(attempt=1).finished_at
    for moment in (finished + timedelta(seconds=2.5), job.run_after - timedelta(milliseconds=1)):
        assert _claim_at(moment) == [], moment
    (claim,) = _claim_at(job.run_after)
    assert execute_claim(claim) == "completed"


def test_max_retries_exhausted(engine):
    set_faults(engine.faults, {"step1": {"mode": "retryable", "times": 99}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    run_to_rest()
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.retry_count == 3
    assert job.runs.count() == 4  # four attempts in all
    assert "HTTP 503" in job.error_message and "step1" in job.error_message
    assert set(job.runs.values_list("error_kind", flat=True)) == {"retryable"}
    assert engine.recorder.of_type("run_failed")[-1].error == job.error_message


def test_permanent_error_fails_at_once(engine):
    set_faults(engine.faults, {"step1": {"mode": "permanent", "times": 99}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    run_to_rest()
    job.refresh_from_db()
    assert (job.status, job.retry_count, job.runs.count()) == ("failed", 0, 1)
    assert "HTTP 400" in job.error_message
    assert job.runs.get().error_kind == "permanent"


def test_retry_chain_linkage(engine):
    set_faults(engine.faults, {"only": {"mode": "retryable", "times": 99}})
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    run_to_rest()
    set_faults(engine.faults, {})
    job_retry(job_id=job.pk)  # a manual retry continues the chain
    job_execute_now(job_id=job.pk)
    runs = list(JobRun.objects.filter(job=job).order_by("attempt"))
    assert [r.attempt for r in runs] == [1, 2, 3, 4, 5]
    assert runs[0].retry_of is None
    for previous, current in itertools.pairwise(runs):
        assert current.retry_of_id == previous.pk
        assert previous.retried_by.pk == current.pk
    assert runs[-1].status == "completed"


def test_retry_from_step_reruns_that_step_and_the_rest(engine):
    job = job_create(marketplace=MARKETPLACE, action="five", params=engine.params())
    job_execute_now(job_id=job.pk)
    job_retry_from_step(job_id=job.pk, step_order=4)
    job.refresh_from_db()
    assert job.status == "queued"
    assert _statuses(job) == ["completed"] * 3 + ["pending", "pending"]
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "completed"
    # step 4's effect exists already: its check records it instead of repeating it
    assert _steps_run(engine) == ["step1", "step2", "step3", "step4", "step5"]
    assert job.tasks.get(step_order=4).reused_existing is True


def test_lost_run_is_recovered_and_a_stale_worker_cannot_write(engine):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    claim = claim_next_job(worker="stale-worker:1")
    assert claim is not None and claim.job_id == job.pk
    task = job.tasks.get(step_order=1)
    task_start(claim, task, {}, first_write=True)  # it started a step, then went silent
    JobRun.objects.filter(pk=claim.run_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert recover_lost_runs() == 1
    lost = JobRun.objects.get(pk=claim.run_id)
    assert lost.status == "failed" and lost.error_kind == "worker_lost"
    assert "worker lost" in lost.error_message and "stale-worker:1" in lost.error_message
    job.refresh_from_db()
    assert job.status == "retrying" and job.retry_count == 1

    for renew in (False, True):  # both fences: the row lock alone, and the lease renewal
        with pytest.raises(RunFenced), transaction.atomic():
            task_advance(
                claim, task, {"remote_id": "from the stale worker"}, False, None, {}, renew=renew
            )
    # … and the fence of a job's last step, whose commit also ends the job
    with pytest.raises(RunFenced):
        finish_completed(claim, {}, (task, {"remote_id": "from the stale worker"}, False))
    task.refresh_from_db()
    assert task.status == "failed" and task.output is None  # "worker lost", not the stale write
    assert execute_claim(claim) == "fenced"
    assert MarketplaceJob.objects.get(pk=job.pk).status == "retrying"

    run_to_rest()
    job.refresh_from_db()
    assert job.status == "completed"
    assert job.runs.get(attempt=2).retry_of_id == claim.run_id
    assert len(ledger_entries(engine.ledger)) == 3


@pytest.mark.parametrize(("heartbeat", "renewed"), [(0.2, True), (60.0, False)])
def test_step_boundaries_renew_the_lease_only_when_the_heartbeat_is_due(
    engine, settings, heartbeat, renewed
):
    settings.ORCHESTRATION = {"HEARTBEAT_SECONDS": heartbeat, "CANCEL_POLL_SECONDS": 5}
    set_faults(engine.faults, {"step2": {"mode": "sleep", "seconds": 0.3, "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    assert job_execute_now(job_id=job.pk) == "completed"
    run = job.runs.get()
    # The first write renews (and stamps started_at); after the 0.3-s step, the next
    # boundary renews again only if the heartbeat interval has passed.
    since_start = (run.heartbeat_at - run.started_at).total_seconds()
    assert (since_start >= 0.3) is renewed, since_start
    assert run.steps_completed == 3


@pytest.mark.parametrize("renewed", [True, False])
def test_jobs_claimed_together_keep_their_leases_while_an_earlier_one_runs_long(
    engine, settings, renewed
):
    settings.ORCHESTRATION = {
        "LEASE_SECONDS": 1, "HEARTBEAT_SECONDS": 0.2, "CANCEL_POLL_SECONDS": 0.05,
    }  # fmt: skip
    set_faults(engine.faults, {"step1": {"mode": "sleep", "seconds": 1.5, "times": 1}})
    for _ in range(2):
        job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    first, second = claim_jobs(limit=2)
    # The first job takes 1.5 s, longer than the second's 1-s lease from the claim.
    waiting = [second.run_id] if renewed else None
    assert execute_claim(first, waiting=waiting) == "completed"
    if renewed:
        assert recover_lost_runs() == 0
        assert execute_claim(second) == "completed"
    else:  # what the renewal prevents: a job that never started handed back as if lost
        assert recover_lost_runs() == 1
        # It never started a step: released, no attempt counted, and its worker is fenced.
        assert not JobRun.objects.filter(pk=second.run_id).exists()
        job = MarketplaceJob.objects.get(pk=second.job_id)
        assert (job.status, job.retry_count, job.current_run_id) == ("queued", 0, None)
        assert execute_claim(second) == "fenced"


def test_the_last_step_and_the_end_of_its_job_are_one_commit(engine):
    """The last step's outcome is committed with the job's end: if the job may not complete
    (here staff cancelled it from under a worker that kept no fence), neither is the step
    recorded: no COMPLETED step of a job that did not complete."""
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    claim = claim_next_job()
    task = job.tasks.get()
    task_start(claim, task, {}, first_write=True)
    # The job row moves on without its run ending (what no engine path does, but what the
    # statement must refuse rather than half-apply).
    MarketplaceJob.objects.filter(pk=job.pk).update(status="failed")
    with pytest.raises(ForbiddenTransition):
        finish_completed(claim, {}, (task, {"remote_id": "r-1"}, False))
    task.refresh_from_db()
    assert (task.status, task.output) == ("running", None)
    assert JobRun.objects.get(pk=claim.run_id).status == "running"

    MarketplaceJob.objects.filter(pk=job.pk).update(status="running")
    assert (
        finish_completed(claim, {"only": {"remote_id": "r-1"}}, (task, {"remote_id": "r-1"}, True))
        == "completed"
    )
    task.refresh_from_db()
    run = JobRun.objects.get(pk=claim.run_id)
    assert (task.status, task.output, task.reused_existing) == (
        "completed",
        {"remote_id": "r-1"},
        True,
    )
    assert (run.status, run.steps_completed) == ("completed", 1)
    kinds = [(e.type, e.status) for e in engine.recorder.events if e.job_id == job.pk][-3:]
    assert kinds == [("task_progress", "completed"), ("run_completed", "completed"),
                     ("job_status", "completed")]  # fmt: skip
