"""Rate limits drain evenly (issue 17): a 60/min resource starts about one job per second,
not a minute's worth at once followed by ~54 s of idling.

The clock is simulated by moving every run's ``started_at`` back between claims (the rate
check reads only those timestamps), so a minute of claims takes well under a second.
"""

import itertools
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from orchestration.engine.claims import claim_jobs, next_wake_time
from orchestration.models import JobRun
from orchestration.services import job_create, resource_set_limits
from tests.engine_providers import MARKETPLACE

STEP = timedelta(milliseconds=500)


@pytest.fixture
def still_clock(monkeypatch):
    """The engine's clock stands still, so only ``_age_runs`` moves time: a loaded machine
    (seconds between claims) must not add room the simulated half seconds did not. It
    stands ahead of the real one: jobs the test queues (``run_after`` from the model
    field's default, the real clock) are due."""
    instant = timezone.now() + timedelta(minutes=10)
    monkeypatch.setattr(timezone, "now", lambda: instant)


def _queue(engine, count):
    for _ in range(count):
        job_create(marketplace=MARKETPLACE, action="one", params=engine.params())


def _claim_until_refused():
    started = 0
    for _ in range(20):
        claimed = len(claim_jobs(limit=32, worker="w1"))
        if not claimed:
            return started
        started += claimed
    raise AssertionError("claims never stopped")


def _age_runs(delta):
    JobRun.objects.filter(resource_key="testmkt").update(started_at=F("started_at") - delta)


def test_sixty_per_minute_starts_one_per_second_not_a_burst(engine, still_clock):
    # Concurrency far above the rate: only the rate limit holds jobs back.
    resource_set_limits(key="testmkt", concurrency=500, rate_per_minute=60)
    _queue(engine, 90)

    per_claim = []
    for _ in range(120):  # 60 simulated seconds, a claim every 0.5 s
        per_claim.append(len(claim_jobs(limit=32, worker="w1")))
        _age_runs(STEP)

    # A claim never starts a burst: at most one job per claim, i.e. per half second.
    assert max(per_claim) == 1, per_claim[:10]
    starts = sorted(
        JobRun.objects.filter(resource_key="testmkt").values_list("started_at", flat=True)
    )
    # Any 1-s sub-window holds at most one start (the spacing a 60/min limit allows)...
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.999, min(gaps)
    # ...and the resource keeps draining through the minute instead of idling after a burst.
    assert 55 <= len(starts) <= 61, len(starts)


def test_next_wake_is_the_spacing_not_the_end_of_the_minute(engine):
    from django.utils import timezone

    resource_set_limits(key="testmkt", concurrency=500, rate_per_minute=60)
    _queue(engine, 5)
    assert len(claim_jobs(limit=32, worker="w1")) == 1
    assert claim_jobs(limit=32, worker="w1") == []  # held back by the spacing
    (started,) = JobRun.objects.filter(resource_key="testmkt").values_list("started_at", flat=True)
    wake = next_wake_time(timezone.now())
    assert wake is not None and wake - started == timedelta(seconds=1)


def test_fast_and_slow_rates_keep_their_spacing(engine, still_clock):
    # 600/min: ten starts per second at most (a drain takes its share of the room per claim).
    resource_set_limits(key="testmkt", concurrency=500, rate_per_minute=600)
    _queue(engine, 40)
    assert _claim_until_refused() == 10
    _age_runs(timedelta(seconds=1))
    assert _claim_until_refused() == 10
    # A slow rate: 6/min is one start per 10 s.
    resource_set_limits(key="testmkt", concurrency=500, rate_per_minute=6)
    _age_runs(timedelta(seconds=61))  # the 20 starts above leave the 60-s window (edge in)
    assert _claim_until_refused() == 1
    _age_runs(timedelta(seconds=9))
    assert claim_jobs(limit=32, worker="w1") == []
    _age_runs(timedelta(seconds=1))
    assert len(claim_jobs(limit=32, worker="w1")) == 1
