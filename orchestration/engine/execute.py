"""Running claimed jobs: each job's remaining steps in order, one commit per step (see
``advance``), its end recorded by ``finish``; leases renewed while it runs; a bug in the
engine fails that run instead of the drain.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from orchestration import conf, states, steps
from orchestration.engine import advance, finish, slots
from orchestration.engine.claims import CLAIM_FIELDS, Claim, claim_jobs, start_runs
from orchestration.engine.executor import StepExecutor
from orchestration.engine.session import DATABASE_LOST, RunFenced, worker_id
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from orchestration.states import JOB_CLAIMABLE, RunStatus, TaskStatus
from tenants.db import current_schema

logger = logging.getLogger(__name__)


class DatabaseLost(Exception):
    """The connection went away while claimed jobs were running; ``left`` are the claims
    not finished (the one interrupted first): the caller hands them back once it can."""

    def __init__(self, left: list[Claim], cause: BaseException):
        super().__init__(f"database connection lost with {len(left)} claimed job(s) left: {cause}")
        self.left = left


def heartbeat(claim: Claim) -> bool:
    """Renew the lease; False (and nothing written) if the run was fenced."""
    return bool(renew_leases([claim.run_id]))


def execute_claims(
    claimed: list[Claim], *, executor: StepExecutor, deadline: float | None = None
) -> tuple[int, list[Claim]]:
    """Run claimed jobs one after the other; returns (how many ran, the claims not started).

    The later ones' leases are renewed meanwhile (inside a long job by its heartbeat,
    between jobs every ``HEARTBEAT_SECONDS``). None starts after ``deadline`` (monotonic):
    those are returned for the caller to hand back unclaimed, so a drain never overruns
    django-q2's timeout because its marketplace got slow. An unexpected exception in one
    job fails that run as an internal error and the others go on; a lost database
    connection raises ``DatabaseLost`` with the claims left.
    """
    renewed = time.monotonic()
    start: advance.NextStart | None = None  # the next job's start, made by this one's end
    for index, claim in enumerate(claimed):
        started = start if start is not None and start.started and start.claim is claim else None
        if started is None and deadline is not None and time.monotonic() >= deadline:
            return index, claimed[index:]
        waiting = [c.run_id for c in claimed[index + 1 :]]
        following = claimed[index + 1] if index + 1 < len(claimed) else None
        made: list[advance.NextStart] = []

        def then(
            following: Claim | None = following, made: list[advance.NextStart] = made
        ) -> advance.NextStart | None:
            # Asked by the job's last step: none past the deadline (it would not be run).
            if following is None or (deadline is not None and time.monotonic() >= deadline):
                return None
            nxt = next_start(following)
            if nxt is not None:
                made.append(nxt)
            return nxt

        try:
            if waiting and time.monotonic() - renewed >= conf.get("HEARTBEAT_SECONDS"):
                renew_leases([claim.run_id, *waiting])
                renewed = time.monotonic()
            execute_claim(claim, executor=executor, waiting=waiting, started=started, then=then)
        except DATABASE_LOST as exc:
            raise DatabaseLost(claimed[index:], exc) from exc
        except Exception as exc:
            logger.exception("job %s (run %s) raised in the engine", claim.job_id, claim.run_id)
            try:
                _fail_internal(claim, exc)
            except DATABASE_LOST as lost:
                raise DatabaseLost(claimed[index:], lost) from lost
        start = made[0] if made else None
    return len(claimed), []


def _fail_internal(claim: Claim, exc: Exception) -> None:
    """The engine itself raised while running a claim: fail that run for good with the
    traceback (staff can retry it), rather than lose the drain and every claim after it."""
    err = steps.PermanentStepError(f"internal error: {type(exc).__name__}: {exc}")
    try:
        finish.finish_failed(claim, None, err, tb=traceback.format_exc(), internal=True)
    except DATABASE_LOST:
        raise
    except (RunFenced, states.ForbiddenTransition):
        # Already ended elsewhere (recovered, cancelled): nothing left to record.
        logger.info("run %s had already ended; its internal error is only logged", claim.run_id)
    except Exception:
        # Left RUNNING: its lease expires and the recovery sweep applies the retry policy.
        logger.exception("could not record the internal error of run %s", claim.run_id)


def renew_leases(run_ids: list[int]) -> int:
    """Renew the leases of runs that are still RUNNING (claimed, waiting for their turn)."""
    if not run_ids:
        return 0
    now = timezone.now()
    return JobRun.objects.filter(pk__in=run_ids, status=RunStatus.RUNNING).update(
        heartbeat_at=now, lease_expires_at=now + timedelta(seconds=conf.get("LEASE_SECONDS"))
    )


def _plan(claim: Claim) -> tuple[MarketplaceJob, list[MarketplaceTask], dict, dict]:
    """(job, its tasks not completed, the completed ones' outputs, the steps provided by
    name) for running a claimed job; raises ``steps.UnknownProvider``."""
    job = claim.job or MarketplaceJob.objects.get(pk=claim.job_id)
    tasks = claim.tasks if claim.tasks is not None else list(job.tasks.order_by("step_order"))
    outputs = {t.step_type: t.output or {} for t in tasks if t.status == TaskStatus.COMPLETED}
    pending = [t for t in tasks if t.status != TaskStatus.COMPLETED]
    provided = {s.step_type: s for s in steps.steps_for(job.marketplace, job.action)}
    return job, pending, outputs, provided


def next_start(claim: Claim) -> advance.NextStart | None:
    """The start of a claimed job's first remaining step, for the previous job's end to make
    (None when the job would not start a step: nothing left, or its step is not provided)."""
    try:
        _job, pending, outputs, provided = _plan(claim)
    except steps.UnknownProvider:
        return None
    except Exception:  # the job then starts on its own (and meets the error there)
        logger.exception("could not prepare the start of job %s", claim.job_id)
        return None
    if not pending or pending[0].step_type not in provided:
        return None
    return advance.NextStart(claim, pending[0], outputs)


def execute_claim(
    claim: Claim,
    *,
    executor: StepExecutor | None = None,
    waiting: list[int] | None = None,
    started: advance.NextStart | None = None,
    then: Callable[[], advance.NextStart | None] | None = None,
) -> str:
    """Run the claimed job's remaining tasks in order; returns the job's final status here.

    ``waiting``: runs claimed with this one that start after it; their leases are renewed
    with this run's (a long job must not get them declared lost before they start).
    ``started``: its first remaining step was already started (by the previous job's end).
    ``then``: asked at the last step for the next claimed job's start, which this job's end
    makes in the same commit.
    """
    if executor is None:
        executor = StepExecutor()
        try:
            return execute_claim(claim, executor=executor, waiting=waiting, started=started,
                                 then=then)  # fmt: skip
        finally:
            executor.close()
    schema = current_schema()
    try:
        job, pending, outputs, provided = _plan(claim)
    except steps.UnknownProvider as exc:
        return finish.finish_failed(claim, None, steps.PermanentStepError(str(exc)), tb="")
    cancelled = threading.Event()
    last_beat = [time.monotonic()]

    def on_tick() -> None:
        try:
            if time.monotonic() - last_beat[0] >= conf.get("HEARTBEAT_SECONDS"):
                last_beat[0] = time.monotonic()
                renew_leases(waiting or [])
                if not heartbeat(claim):
                    cancelled.set()  # fenced: make a cooperative step stop early
                slots.drain_heartbeat()
            if MarketplaceJob.objects.filter(pk=claim.job_id, cancel_requested=True).exists():
                cancelled.set()
        except DATABASE_LOST as exc:
            # Let the step finish rather than abandon it mid-call: the loss surfaces at the
            # step boundary's commit, when no step of this worker is in flight.
            logger.warning("lease renewal of run %s failed: %s", claim.run_id, exc)
            with contextlib.suppress(Exception):
                connection.close()

    try:
        # The first remaining task starts on its own (or with the previous job's end); after
        # that, each commit records one step's outcome and starts the next (one statement,
        # one commit per step).
        if started is not None:
            cancel = started.cancel
        elif pending:
            cancel = advance.task_start(claim, pending[0], outputs, first_write=True)
        else:
            cancel = False
        for index, task in enumerate(pending):
            if cancel or cancelled.is_set():
                return finish.finish_cancelled(claim)
            step = provided.get(task.step_type)
            if step is None:
                err = steps.PermanentStepError(
                    f"step {task.step_type!r} is no longer provided for {job.marketplace}.{job.action}"
                )
                return finish.finish_failed(claim, task, err, tb="")
            ctx = steps.StepContext(
                schema_name=schema, job_id=job.pk, marketplace=job.marketplace, action=job.action,
                product_id=job.product_id, params=job.params, step_type=task.step_type,
                step_order=task.step_order, attempt=claim.attempt,
                timeout=float(getattr(step, "timeout", conf.get("DEFAULT_STEP_TIMEOUT"))),
                outputs=dict(outputs), _is_cancelled=cancelled.is_set,
            )  # fmt: skip
            try:
                output, reused = executor.run(step, ctx, on_tick=on_tick)
            except steps.StepCancelled:
                return finish.finish_cancelled(claim)
            except steps.StepError as exc:
                return finish.finish_failed(claim, task, exc, tb=traceback.format_exc())
            except Exception as exc:  # a bug in a step: fail for good, keep the traceback
                err = steps.PermanentStepError(f"{type(exc).__name__}: {exc}")
                return finish.finish_failed(
                    claim, task, err, tb=traceback.format_exc(), internal=True
                )
            outputs[task.step_type] = dict(output)
            nxt = pending[index + 1] if index + 1 < len(pending) else None
            renew = time.monotonic() - last_beat[0] >= conf.get("HEARTBEAT_SECONDS")
            if renew:
                last_beat[0] = time.monotonic()
                renew_leases(waiting or [])
            if nxt is None:  # the last step's commit also ends the job
                return finish.finish_completed(
                    claim, outputs, (task, dict(output), reused),
                    start_next=then() if then is not None else None,
                )  # fmt: skip
            cancel = advance.task_advance(
                claim, task, dict(output), reused, nxt, outputs, renew=renew
            )
        return finish.finish_completed(
            claim, outputs, start_next=then() if then is not None else None
        )
    except RunFenced:
        logger.warning(
            "run %s of job %s was fenced; stopping without writing", claim.run_id, claim.job_id
        )
        return "fenced"


def job_execute_now(*, job_id: int) -> str | None:
    """Claim and run one specific job in this process (CLI `run_job`, tests). None if not claimable."""
    now = timezone.now()
    with transaction.atomic():
        job = (
            MarketplaceJob.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=job_id, status__in=JOB_CLAIMABLE, cancel_requested=False)
            .only(*CLAIM_FIELDS)
            .first()
        )
        if job is None:
            return None
        (claim,) = start_runs([job], worker=worker_id(), now=now)
    executor = StepExecutor()
    try:
        return execute_claim(claim, executor=executor)
    finally:
        executor.close()


def run_available_jobs(
    *, until: float | None = None, limit: int | None = None, executor: StepExecutor | None = None
) -> int:
    """Claim and run jobs of the current tenant until none is runnable, ``until`` (monotonic)
    passes or ``limit`` jobs ran. Returns how many ran."""
    own = executor is None
    executor = executor or StepExecutor()
    ran = 0
    batch = int(conf.get("CLAIM_BATCH"))
    try:
        while (until is None or time.monotonic() < until) and (limit is None or ran < limit):
            claimed = claim_jobs(limit=batch if limit is None else min(batch, limit - ran))
            if not claimed:
                break
            ran += execute_claims(claimed, executor=executor)[0]
    finally:
        if own:
            executor.close()
    return ran
