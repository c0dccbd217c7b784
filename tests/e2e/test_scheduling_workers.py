"""Scheduling with real workers: exclusive resources and fairness across tenants."""

from __future__ import annotations

from django_tenants.utils import tenant_context

from orchestration.models import JobRun, MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_create
from tests.e2e.conftest import wait_for
from tests.engine_providers import BRIDGE, MARKETPLACE, set_faults

FAST = {"DRAIN_SECONDS": 5, "TENANT_TURN_SECONDS": 0.5, "CANCEL_POLL_SECONDS": 0.05}
# docs/engine.md: an idle tenant's job starts after at most one turn of each busy drain
# (the turn + the job it is finishing) plus q2's poll (0.2 s): here 0.5 + 0.05 + 0.2 s.
# Five times that: a margin for a busy 2-core machine, not a benchmark (starved: ~60 s).
FAIRNESS_BOUND = 5 * (FAST["TENANT_TURN_SECONDS"] + 0.05 + 0.2)


def _overlaps(intervals) -> int:
    """How many pairs of intervals overlap in time."""
    count = 0
    for i, (a_start, a_end) in enumerate(intervals):
        for b_start, b_end in intervals[i + 1 :]:
            if a_start < b_end and b_start < a_end:
                count += 1
    return count


def test_exclusive_resource_never_runs_twice_while_others_run_concurrently(
    tx_tenant_a, start_cluster, tmp_path
):
    faults = tmp_path / "faults.json"
    # Every step sleeps a little so concurrent runs, if allowed, would overlap.
    set_faults(faults, {"only": {"mode": "sleep", "seconds": 0.3, "times": 1000}})
    params = {"faults": str(faults)}
    jobs = [JobSpec(marketplace=BRIDGE, action="one", params=params) for _ in range(4)]
    # More of the other resource than one worker does while the other works through the
    # bridge's line, so both workers end up running it at the same time.
    jobs += [JobSpec(marketplace=MARKETPLACE, action="one", params=params) for _ in range(12)]
    start_cluster(workers=2, **FAST)
    batch = batch_create(name="mixed", jobs=jobs)
    wait_for(
        lambda: batch.__class__.objects.get(pk=batch.pk).status == "completed",
        timeout=120,
        what="the batch",
    )

    def intervals(marketplace):
        return list(
            JobRun.objects.filter(job__batch=batch, job__marketplace=marketplace).values_list(
                "started_at", "finished_at"
            )
        )

    assert _overlaps(intervals(BRIDGE)) == 0  # the bridge: one job at a time
    assert _overlaps(intervals(MARKETPLACE)) > 0  # the other resource ran jobs concurrently


def test_idle_tenant_job_is_not_starved_by_a_big_batch(
    tx_tenant_a, tx_tenant_b, start_cluster, tmp_path
):
    faults = tmp_path / "faults.json"
    # 2,000 jobs of 50 ms each: tenant A alone keeps both workers busy for 50 s or more.
    set_faults(faults, {"only": {"mode": "sleep", "seconds": 0.05, "times": 100000}})
    params = {"faults": str(faults)}
    with tenant_context(tx_tenant_a):
        big = batch_create(
            name="big", jobs=[JobSpec(marketplace=MARKETPLACE, action="one", params=params)] * 2000
        )
    start_cluster(workers=2, **FAST)
    with tenant_context(tx_tenant_a):
        wait_for(
            lambda: JobRun.objects.filter(job__batch=big).count() > 20, what="tenant A to be busy"
        )
    with tenant_context(tx_tenant_b):
        single = job_create(marketplace=MARKETPLACE, action="one", params=params)
        wait_for(
            lambda: MarketplaceJob.objects.get(pk=single.pk).status == "completed",
            timeout=60,
            what="tenant B's job",
        )
        started = JobRun.objects.get(job=single).started_at
        waited = (started - single.created_at).total_seconds()
        assert waited <= FAIRNESS_BOUND, f"tenant B's job waited {waited:.1f} s"
    with tenant_context(tx_tenant_a):
        # B's job started while A's batch still had work queued: B was not starved.
        remaining = MarketplaceJob.objects.filter(batch=big, status="queued").count()
        assert remaining > 0, "tenant B only ran after tenant A's batch had drained"
        # ... and A's batch carries on afterwards (B's turn did not stall A). A's workers may
        # still hold a claimed chunk when B finishes, so wait for A's next claim.
        wait_for(
            lambda: JobRun.objects.filter(job__batch=big, started_at__gt=started).exists(),
            timeout=60,
            what="tenant A to continue after B",
        )
