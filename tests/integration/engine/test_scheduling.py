"""Scheduling within a tenant: priority, resource limits, "run now" reservations, pause."""

from orchestration.engine.claims import resource_policies
from orchestration.models import MarketplaceJob, ResourcePolicy
from orchestration.services import (
    claim_next_job,
    execute_claim,
    job_create,
    job_run_now,
    resource_pause,
    resource_resume,
    resource_set_limits,
    run_available_jobs,
)
from tests.engine_providers import BRIDGE, MARKETPLACE


def _job(engine, **kwargs):
    return job_create(marketplace=MARKETPLACE, action="one", params=engine.params(), **kwargs)


def _order_of_runs():
    return list(
        MarketplaceJob.objects.filter(started_at__isnull=False)
        .order_by("runs__started_at", "runs__id")
        .values_list("pk", flat=True)
    )


def test_priority_ordering(engine):
    low = _job(engine, priority=0)
    high = _job(engine, priority=10)
    mid = _job(engine, priority=5)
    low_too = _job(engine, priority=0)
    run_available_jobs()
    assert _order_of_runs() == [high.pk, mid.pk, low.pk, low_too.pk]  # FIFO within a priority


def test_resource_policies_come_from_providers_and_are_editable(engine):
    policies = resource_policies()
    assert policies["testbridge"].concurrency == 1
    assert policies["testmkt"].concurrency == 8
    resource_set_limits(key="testmkt", concurrency=2, rate_per_minute=30)
    assert ResourcePolicy.objects.get(key="testmkt").concurrency == 2


def test_concurrency_limit_blocks_claims_until_a_run_ends(engine):
    first = job_create(marketplace=BRIDGE, action="one", params=engine.params())
    second = job_create(marketplace=BRIDGE, action="one", params=engine.params())
    other = _job(engine)
    claim = claim_next_job()
    assert claim.job_id == first.pk
    # The bridge is taken: the next claim skips the second bridge job, not the other resource.
    nxt = claim_next_job()
    assert nxt.job_id == other.pk
    assert claim_next_job() is None
    execute_claim(claim)
    assert claim_next_job().job_id == second.pk


def test_rate_limit_blocks_starts_within_the_window(engine):
    resource_set_limits(key="testmkt", concurrency=8, rate_per_minute=2)
    jobs = [_job(engine) for _ in range(3)]
    # Spread over the window (issue 17; test_rate_spreading.py): 2/min is one start per 30 s.
    assert run_available_jobs() == 1
    assert MarketplaceJob.objects.get(pk=jobs[1].pk).status == "queued"
    assert MarketplaceJob.objects.get(pk=jobs[2].pk).status == "queued"


def test_direct_on_an_empty_queue_runs_immediately(engine):
    job = _job(engine, enqueue=False)
    job_run_now(job_id=job.pk)
    claim = claim_next_job()
    assert claim.job_id == job.pk
    assert MarketplaceJob.objects.get(pk=job.pk).direct is True


def test_direct_between_queued_jobs_preserves_order(engine):
    resource_set_limits(key="testmkt", concurrency=1, rate_per_minute=None)
    job1 = _job(engine)
    claim1 = claim_next_job()  # Job1 holds the resource
    assert claim1.job_id == job1.pk
    job2 = _job(engine)
    direct = _job(engine, enqueue=False)
    job_run_now(job_id=direct.pk)
    assert claim_next_job() is None  # the resource is busy: the direct job waits at the head
    execute_claim(claim1)
    run_available_jobs()
    assert _order_of_runs() == [job1.pk, direct.pk, job2.pk]


def test_reservation_pauses_the_resource_queue(engine):
    resource_set_limits(key="testmkt", concurrency=3, rate_per_minute=None)
    running = _job(engine)
    claim_running = claim_next_job()
    queued = _job(engine)
    direct = _job(engine, enqueue=False)
    job_run_now(job_id=direct.pk)
    claim_direct = claim_next_job()
    assert claim_direct.job_id == direct.pk
    # One place is still free, but the queue of this resource pauses while the direct job runs.
    assert claim_next_job() is None
    execute_claim(claim_direct)
    assert claim_next_job().job_id == queued.pk
    assert claim_running.job_id == running.pk


def test_pause_and_resume_a_resource(engine):
    jobs = [_job(engine) for _ in range(3)]
    resource_pause(key="testmkt")
    assert claim_next_job() is None
    bridge = job_create(marketplace=BRIDGE, action="one", params=engine.params())
    assert claim_next_job().job_id == bridge.pk  # other resources are unaffected
    resource_resume(key="testmkt")
    run_available_jobs()
    assert [pk for pk in _order_of_runs() if pk != bridge.pk] == [j.pk for j in jobs]
