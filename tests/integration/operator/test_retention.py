"""Retention: the prune deletes finished work older than the tenant's settings in small
batches, never unfinished work nor a finished job of a running batch; --dry-run counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import record
from operations import retention
from operations.models import RetentionPolicy
from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask
from orchestration.services import batch_cancel, batch_create, run_available_jobs

OLD = timezone.now() - timedelta(days=400)


def _age(model, ids, **fields):
    # Test setup only: make rows look old (time travel), not a service path.
    model.objects.filter(pk__in=ids).update(**fields)


@pytest.fixture
def history(engine):
    """An old completed batch (run through the engine), an old cancelled batch, a recent
    batch, and an old finished job inside a batch that still runs."""
    done = batch_create(name="old done", jobs=[engine.spec(action="one") for _ in range(3)])
    run_available_jobs()
    cancelled = batch_create(name="old cancelled", jobs=[engine.spec() for _ in range(4)])
    batch_cancel(batch_id=cancelled.pk)
    recent = batch_create(name="recent", jobs=[engine.spec()])
    batch_cancel(batch_id=recent.pk)
    running = batch_create(name="still running", jobs=[engine.spec() for _ in range(2)])
    first = MarketplaceJob.objects.filter(batch=running).order_by("pk").first()
    from orchestration.services import job_cancel

    job_cancel(job_id=first.pk)
    old_batches = [done.pk, cancelled.pk]
    _age(Batch, [*old_batches, running.pk], completed_at=OLD)
    _age(
        MarketplaceJob, MarketplaceJob.objects.exclude(batch=recent).values("pk"), completed_at=OLD
    )
    _age(JobRun, JobRun.objects.values("pk"), finished_at=OLD)
    record("staff", "admin", "job.retry", [("job", 1)])  # a recent entry, kept
    # An old one (entries are never updated: made old as they are written).
    AuditEntry.objects.create(actor="staff", door="admin", action="job.cancel", created_at=OLD)
    return {"old": old_batches, "recent": recent.pk, "running": running.pk, "first": first.pk}


def test_dry_run_counts_and_deletes_nothing(history):
    before = MarketplaceJob.objects.count()
    counts, more = retention.prune(dry_run=True)
    assert not more
    assert counts["jobs"] == 7  # 3 completed + 4 cancelled; not the running batch's job
    assert counts["activity"] == 1
    assert MarketplaceJob.objects.count() == before


def test_prune_deletes_old_finished_work_in_batches(history, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "PAUSE", 0)
    counts, more = retention.prune()
    assert not more
    assert counts["jobs"] == 7 and counts["batches"] == 2 and counts["activity"] == 1
    assert not Batch.objects.filter(pk__in=history["old"]).exists()
    assert not MarketplaceTask.objects.filter(job__batch_id__in=history["old"]).exists()
    assert Batch.objects.filter(pk=history["recent"]).exists()
    assert MarketplaceJob.objects.filter(pk=history["first"]).exists()  # its batch still runs
    assert retention.prune(dry_run=True)[0]["jobs"] == 0


def test_prune_stops_at_its_time_budget_and_goes_on(history, monkeypatch):
    monkeypatch.setattr(retention, "PAUSE", 0)
    counts, more = retention.prune(seconds=0)  # the budget is spent before the first batch
    assert more and sum(counts.values()) == 0
    counts, more = retention.prune()  # the next task goes on from there
    assert not more and counts["jobs"] == 7


def test_empty_settings_keep_everything(history):
    RetentionPolicy.objects.update_or_create(
        pk=1,
        defaults={"jobs_days": None, "runs_days": None, "activity_days": None,
                  "webhook_deliveries_days": None, "uploads_days": None},
    )  # fmt: skip
    counts, _ = retention.prune()
    assert counts == {}


def test_nightly_prune_is_claimed_once_a_day(tenant_a):
    settings = retention.policy()
    night = timezone.now().replace(hour=settings.prune_hour + 1, minute=0)
    assert retention.prune_claim_if_due(night)
    assert not retention.prune_claim_if_due(night + timedelta(minutes=5))
    assert retention.prune_claim_if_due(night + timedelta(days=1))
    before_hour = (night + timedelta(days=2)).replace(hour=settings.prune_hour - 1)
    assert not retention.prune_claim_if_due(before_hour)
