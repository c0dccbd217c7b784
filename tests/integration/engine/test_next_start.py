"""A drain runs claimed jobs back to back: each job's end also starts the next job's first
step, in the same commit (issue 17), so a job of N steps costs N commits, none only to
start it. The fold must keep every guard of a job's own start."""

from __future__ import annotations

import pytest

from orchestration.engine import advance
from orchestration.engine.claims import claim_jobs
from orchestration.engine.execute import execute_claims
from orchestration.engine.executor import StepExecutor
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from orchestration.services import batch_create
from tests.engine_providers import ledger_entries


@pytest.fixture
def starts(monkeypatch):
    """The jobs started by their own ``task_start`` (not by the job before them)."""
    started: list[int] = []
    original = advance.task_start

    def counting(claim, task, outputs, *, first_write):
        started.append(claim.job_id)
        return original(claim, task, outputs, first_write=first_write)

    monkeypatch.setattr(advance, "task_start", counting)
    return started


def _run(claimed):
    executor = StepExecutor()
    try:
        return execute_claims(claimed, executor=executor)
    finally:
        executor.close()


def test_only_the_first_claimed_job_starts_on_its_own(engine, starts):
    batch = batch_create(name="fold", jobs=[engine.spec("three") for _ in range(4)])
    claimed = claim_jobs(limit=4)
    assert len(claimed) == 4
    assert _run(claimed) == (4, [])

    assert starts == [claimed[0].job_id]
    batch.refresh_from_db()
    assert (batch.status, batch.completed_jobs) == ("completed", 4)
    for claim in claimed:
        run = JobRun.objects.get(pk=claim.run_id)
        first = MarketplaceTask.objects.get(job_id=claim.job_id, step_order=1)
        # The folded start wrote what a start writes: the run's start, the task's input,
        # attempt and run, and a start before its completion.
        assert run.status == "completed" and run.steps_completed == 3
        assert (first.status, first.attempts, first.last_run_id) == ("completed", 1, run.pk)
        assert first.input == {} and run.started_at <= first.started_at <= first.completed_at
    # Every step ran once, in order, job after job.
    assert len(ledger_entries(engine.ledger)) == 12
    running = [
        (e.job_id, e.data["order"])
        for e in engine.recorder.of_type("task_progress")
        if e.status == "running"
    ]
    assert running == [(c.job_id, order) for c in claimed for order in (1, 2, 3)]


def test_a_cancel_of_the_next_job_stops_it_before_its_first_step(engine, starts):
    batch_create(name="fold", jobs=[engine.spec("one") for _ in range(2)])
    first, second = claim_jobs(limit=2)
    MarketplaceJob.objects.filter(pk=second.job_id).update(cancel_requested=True)

    _run([first, second])

    assert MarketplaceJob.objects.get(pk=first.job_id).status == "completed"
    assert MarketplaceJob.objects.get(pk=second.job_id).status == "cancelled"
    assert len(ledger_entries(engine.ledger)) == 1  # the first job's step only
    assert starts == [first.job_id]


def test_a_fenced_next_run_is_left_alone_and_the_job_before_it_still_ends(engine, starts):
    batch_create(name="fold", jobs=[engine.spec("one") for _ in range(2)])
    first, second = claim_jobs(limit=2)
    # The second run was declared lost meanwhile (as the recovery sweep does).
    JobRun.objects.filter(pk=second.run_id).update(status="failed")

    _run([first, second])

    assert MarketplaceJob.objects.get(pk=first.job_id).status == "completed"
    task = MarketplaceTask.objects.get(job_id=second.job_id)
    assert (task.status, task.attempts, task.last_run_id) == ("pending", 0, None)
    # Its own start then found the fence: nothing of it ran.
    assert starts == [first.job_id, second.job_id]
    assert len(ledger_entries(engine.ledger)) == 1


def test_the_fold_takes_the_next_runs_lock_before_the_ending_runs(engine):
    """Lock order: the recovery sweep locks a run, then its job's queue and batch rows; the
    job end locks the queue and batch rows. So the next run's lock must come first."""
    from orchestration.engine import finish

    sql = finish._finish_sql(True)
    assert sql.index("next_run AS") < sql.index("next_started AS") < sql.index(" run AS")
    ending_run = sql[sql.index(" run AS") : sql.index(" done AS")]
    assert "(SELECT count(*) FROM next_started)" in ending_run
