"""A cancel racing a worker is never lost (review defect 7).

Each race is made deterministic: the other party runs in another thread (its own
database session) at the exact point between two statements of the code under test,
through a hook on a function that code calls there.
"""

import threading

import pytest
from django.db import connection
from django.test import override_settings
from django_tenants.utils import schema_context

import tests.engine_providers  # noqa: F401  (registers the "testmkt" provider)
from orchestration.engine import finish as finish_module
from orchestration.engine import transitions
from orchestration.engine.claims import claim_jobs
from orchestration.models import MarketplaceJob
from orchestration.services import job_create, job_execute_now, jobs_cancel
from tests.engine_providers import MARKETPLACE, set_faults


def _in_other_session(
    schema: str, call, *, wait: float | None = None
) -> tuple[threading.Thread, dict]:
    """Run ``call`` in a thread with its own connection; wait for it (at most ``wait`` s)."""
    outcome: dict = {}

    def run() -> None:
        try:
            with schema_context(schema):
                outcome["result"] = call()
        except Exception as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(wait)
    return thread, outcome


@pytest.fixture
def fast_retries():
    with override_settings(ORCHESTRATION={"RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01}):
        yield


def test_bulk_cancel_does_not_lose_a_job_claimed_while_it_runs(tx_tenant_a, tmp_path, monkeypatch):
    schema = tx_tenant_a.schema_name
    job = job_create(marketplace=MARKETPLACE, action="one", params={"ledger": str(tmp_path / "l")})
    original = transitions.transition_many
    claimed: dict = {}

    def claim_in_between(*args, **kwargs):
        # Inside jobs_cancel, before it moves any waiting job: a worker claims now.
        if not claimed:
            thread, claimed["outcome"] = _in_other_session(schema, lambda: claim_jobs(limit=1))
            assert not thread.is_alive()
        return original(*args, **kwargs)

    monkeypatch.setattr(transitions, "transition_many", claim_in_between)
    jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job.pk))
    monkeypatch.setattr(transitions, "transition_many", original)

    assert "error" not in claimed["outcome"], claimed
    job.refresh_from_db()
    # Either the claim found the job locked (and it was cancelled at once), or it won and
    # the job was asked to stop: never a running job nobody will stop.
    assert job.status == "cancelled" or (job.status == "running" and job.cancel_requested), (
        job.status,
        job.cancel_requested,
        claimed,
    )


def test_a_cancel_requested_while_a_run_fails_ends_cancelled_not_retrying(
    tx_tenant_a, tmp_path, monkeypatch, fast_retries
):
    schema = tx_tenant_a.schema_name
    faults = tmp_path / "faults.json"
    set_faults(faults, {"step2": {"mode": "retryable", "times": 1}})
    job = job_create(
        marketplace=MARKETPLACE, action="three", params={"faults": str(faults)}, max_retries=3
    )
    original = finish_module.backoff_seconds
    cancel: dict = {}

    def cancel_in_between(*args, **kwargs):
        # The failure policy has decided to retry; staff cancel the job now. (Blocked by the
        # job's row lock when the policy holds it: then it goes on after the commit.)
        if not cancel:
            cancel["thread"], cancel["outcome"] = _in_other_session(
                schema, lambda: jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job.pk)),
                wait=1.0,
            )  # fmt: skip
        return original(*args, **kwargs)

    monkeypatch.setattr(finish_module, "backoff_seconds", cancel_in_between)
    outcome = job_execute_now(job_id=job.pk)
    cancel["thread"].join(10)
    assert not cancel["thread"].is_alive()
    assert "error" not in cancel["outcome"], cancel["outcome"]

    job.refresh_from_db()
    assert outcome in ("retrying", "cancelled")
    assert (job.status, job.cancel_requested) == ("cancelled", False)
    assert set(job.tasks.values_list("status", flat=True)) <= {"completed", "cancelled"}


def test_a_cancel_requested_while_the_sweep_recovers_a_lost_run_ends_cancelled(
    tx_tenant_a, tmp_path, monkeypatch, fast_retries
):
    """The sweep locks only the run row; the failure policy must read the job under its own
    row lock, or a cancel flagged meanwhile leaves it RETRYING with the flag set, which no
    claim ever takes again."""
    from datetime import timedelta

    from django.utils import timezone

    from orchestration.engine.advance import task_start
    from orchestration.models import JobRun
    from orchestration.services import recover_lost_runs

    schema = tx_tenant_a.schema_name
    job = job_create(marketplace=MARKETPLACE, action="three", params={}, max_retries=3)
    (claim,) = claim_jobs(limit=1)
    task_start(claim, job.tasks.order_by("step_order")[0], {}, first_write=True)  # a step began
    JobRun.objects.filter(pk=claim.run_id).update(lease_expires_at=timezone.now() - timedelta(1))
    original = finish_module.backoff_seconds
    cancel: dict = {}

    def cancel_in_between(*args, **kwargs):
        if not cancel:
            cancel["thread"], cancel["outcome"] = _in_other_session(
                schema, lambda: jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job.pk)),
                wait=1.0,
            )  # fmt: skip
        return original(*args, **kwargs)

    monkeypatch.setattr(finish_module, "backoff_seconds", cancel_in_between)
    assert recover_lost_runs() == 1
    cancel["thread"].join(10)
    assert not cancel["thread"].is_alive()
    assert "error" not in cancel["outcome"], cancel["outcome"]

    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("cancelled", False)
