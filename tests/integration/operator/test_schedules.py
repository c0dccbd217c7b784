"""Schedules: validation, firing exactly once per slot (two racing processes), missed slots
fire once, a schedule whose batch still runs skips, timezones and DST."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from audit.models import AuditEntry
from orchestration import services as engine
from orchestration.models import Batch, MarketplaceJob
from scheduler import services, timing
from scheduler.models import Schedule, ScheduleFiring
from scheduler.services import Actor, ScheduleError

EVERY_15 = {"cron": "", "every_minutes": 15}


def _schedule(actor, **overrides):
    values = {
        "name": "nightly ebay",
        "action": "publish",
        "marketplaces": ["ebay"],
        "all_products": True,
        "skus": "",
        "priority": 2,
        "sequential": False,
        "cron": "0 3 * * *",
        "every_minutes": None,
        "timezone": "Europe/Paris",
        "active": True,
        **overrides,
    }
    return services.schedule_save(actor=actor, **values)


def _make_due(schedule, at):
    # Test setup only: pretend the slot came (time travel), not a service path.
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=at)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"cron": "61 * * * *"}, "cron", "bad cron expression"),
        ({"cron": "* * *"}, "cron", "five fields"),
        ({"cron": "0 3 * * *", "every_minutes": 5}, "cron", "not both"),
        ({"cron": "", "every_minutes": None}, "cron", "cron expression or"),
        ({"cron": "", "every_minutes": 0}, "cron", "cron expression or"),
        ({"cron": "", "every_minutes": 99999}, "cron", "between 1 and"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown timezone"),
        ({"marketplaces": ["nowhere"]}, "marketplaces", "nowhere"),
        ({"marketplaces": []}, "marketplaces", "at least one marketplace"),
        ({"action": "explode"}, "action", "unknown action"),
        ({"all_products": False, "skus": "  "}, "skus", "SKU"),
        ({"name": ""}, "name", "name"),
    ],
)
def test_bad_schedules_are_refused(tenant_a, staff_actor, overrides, field, message):
    with pytest.raises(ScheduleError, match=message) as caught:
        _schedule(staff_actor, **overrides)
    assert caught.value.field == field
    assert not Schedule.objects.exists()
    assert not AuditEntry.objects.exists()


def test_save_plans_the_next_run_and_is_audited(tenant_a, staff_actor):
    schedule = _schedule(staff_actor)
    assert schedule.next_run_at is not None and schedule.next_run_at > timezone.now()
    local = schedule.next_run_at.astimezone(timing.zone("Europe/Paris"))
    assert (local.hour, local.minute) == (3, 0)
    services.schedule_save(actor=staff_actor, schedule_id=schedule.pk, cron="", every_minutes=15)
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "door", "targets"))
    assert entries == [
        ("schedule.create", "admin", [["schedule", str(schedule.pk)]]),
        ("schedule.change", "admin", [["schedule", str(schedule.pk)]]),
    ]
    with pytest.raises(ScheduleError, match="unknown field"):
        services.schedule_save(actor=staff_actor, schedule_id=schedule.pk, colour="red")


def test_a_due_slot_fires_once_and_missed_slots_fold(tenant_a, staff_actor, products):
    schedule = _schedule(staff_actor, **EVERY_15)
    now = timezone.now()
    # Down for three hours: twelve slots were missed.
    _make_due(schedule, now - timedelta(hours=3))
    fired = services.schedules_fire_due(now=now)
    assert [f.outcome for f in fired] == ["started"]
    schedule.refresh_from_db()
    assert now < schedule.next_run_at <= now + timedelta(minutes=15)
    batch = Batch.objects.get(pk=fired[0].batch_id)
    assert schedule.last_batch_id == batch.pk
    jobs = MarketplaceJob.objects.filter(batch=batch)
    assert jobs.count() == len(products)
    assert set(jobs.values_list("priority", flat=True)) == {2}
    # Nothing more is due until the next slot.
    assert services.schedules_fire_due(now=now) == []
    assert ScheduleFiring.objects.count() == 1


def test_skips_while_its_previous_batch_runs(tenant_a, staff_actor, products):
    schedule = _schedule(staff_actor, **EVERY_15)
    now = timezone.now()
    _make_due(schedule, now - timedelta(minutes=1))
    first = services.schedules_fire_due(now=now)[0]
    schedule.refresh_from_db()
    _make_due(schedule, now)
    second = services.schedules_fire_due(now=now + timedelta(seconds=1))[0]
    assert second.outcome == "skipped"
    assert f"batch #{first.batch_id} is still running" in second.message
    schedule.refresh_from_db()
    assert schedule.last_batch_id == first.batch_id
    assert schedule.last_outcome.startswith("skipped")
    assert schedule.next_run_at > now  # the slot is spent, not retried every tick
    # Once that batch is over, the next slot starts a new one.
    engine.batch_cancel(batch_id=first.batch_id)
    _make_due(schedule, now + timedelta(seconds=2))
    third = services.schedules_fire_due(now=now + timedelta(seconds=3))[0]
    assert third.outcome == "started" and third.batch_id != first.batch_id


def test_a_start_that_fails_is_recorded_and_changes_nothing_else(tenant_a, staff_actor):
    schedule = _schedule(staff_actor, **EVERY_15, all_products=False, skus="NOPE-1")
    now = timezone.now()
    _make_due(schedule, now)
    firing = services.schedules_fire_due(now=now)[0]
    assert firing.outcome == "failed" and "no product matches" in firing.message
    assert not Batch.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_run_at > now


def test_run_now_keeps_the_next_slot(tenant_a, staff_actor, products):
    schedule = _schedule(staff_actor)
    planned = schedule.next_run_at
    firing = services.schedule_run_now(schedule_id=schedule.pk, actor=Actor("ops", "command"))
    assert firing.outcome == "started" and firing.by == "ops"
    schedule.refresh_from_db()
    assert schedule.next_run_at == planned
    entry = AuditEntry.objects.get(action="schedule.run_now")
    assert ["batch", str(firing.batch_id)] in entry.targets and entry.door == "command"
    with pytest.raises(ScheduleError, match="does not exist"):
        services.schedule_run_now(schedule_id=999999, actor=Actor("ops", "command"))


def test_inactive_schedules_do_not_fire(tenant_a, staff_actor, products):
    schedule = _schedule(staff_actor, **EVERY_15)
    services.schedule_set_active(schedule_id=schedule.pk, active=False, actor=staff_actor)
    schedule.refresh_from_db()
    assert schedule.next_run_at is None
    assert services.schedules_fire_due(now=timezone.now() + timedelta(days=2)) == []


PARIS = "Europe/Paris"


def _utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_cron_runs_in_its_timezone_across_dst():
    daily = {"cron": "30 2 * * *", "every_minutes": None, "timezone": PARIS}
    # Spring forward (29 March 2026, 02:00 → 03:00 in Paris): 02:30 does not exist; the
    # slot fires once, at 03:00 CEST (01:00 UTC), then 02:30 CEST again.
    spring = timing.upcoming(**daily, after=_utc(2026, 3, 28, 12), count=2)
    assert spring == [_utc(2026, 3, 29, 1, 0), _utc(2026, 3, 30, 0, 30)]
    # Fall back (25 October 2026, 03:00 → 02:00): 02:30 happens twice; it fires once.
    autumn = timing.upcoming(**daily, after=_utc(2026, 10, 24, 12), count=2)
    assert autumn == [_utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1, 30)]
    # The same wall-clock time in winter and in summer is a different UTC time.
    six = {"cron": "0 6 * * *", "every_minutes": None, "timezone": PARIS}
    assert timing.next_after(**six, after=_utc(2026, 1, 10)) == _utc(2026, 1, 10, 5)
    assert timing.next_after(**six, after=_utc(2026, 7, 10)) == _utc(2026, 7, 10, 4)


def test_interval_slots_are_aligned():
    slots = timing.upcoming(
        cron="", every_minutes=15, timezone=PARIS, after=_utc(2026, 3, 29, 0, 52), count=3
    )
    assert slots == [_utc(2026, 3, 29, 1, 0), _utc(2026, 3, 29, 1, 15), _utc(2026, 3, 29, 1, 30)]


def test_two_processes_racing_fire_each_slot_once(tx_tenant_a):
    """Two workers (threads with their own connections) fire the same due schedules at the
    same moment: each slot fires exactly once."""
    from tests.factories import ProductFactory

    ProductFactory(sku="RACE-1")
    actor = Actor("staff", "admin")
    schedules = [_schedule(actor, name=f"s{i}", **EVERY_15) for i in range(12)]
    now = timezone.now()
    Schedule.objects.update(next_run_at=now - timedelta(minutes=1))
    schema = connection.schema_name
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker():
        try:
            with schema_context(schema):
                barrier.wait(timeout=30)
                results.append(len(services.schedules_fire_due(now=now)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(results) == len(schedules)
    per_schedule = list(
        ScheduleFiring.objects.values_list("schedule_id", flat=True).order_by("schedule_id")
    )
    assert per_schedule == sorted(s.pk for s in schedules)
    assert Batch.objects.count() == len(schedules)


def test_fire_due_all_tenants_is_tenant_sealed(tx_tenant_a):
    from django_tenants.utils import schema_context as ctx

    from scheduler.periodic import fire_due_all_tenants
    from tests.factories import ProductFactory

    ProductFactory(sku="SEAL-1")
    schedule = _schedule(Actor("staff", "admin"), **EVERY_15)
    now = timezone.now()
    _make_due(schedule, now - timedelta(minutes=1))
    schema = connection.schema_name
    connection.set_schema_to_public()
    fired = fire_due_all_tenants(now)
    assert fired == {schema: 1}
    with ctx("test_beta"):
        assert not Batch.objects.exists()
    with ctx(schema):
        assert Batch.objects.count() == 1


# --- stock plans -----------------------------------------------------------------------------


def _plan_schedule(actor, plan, **overrides):
    values = {"action": "plan", "marketplaces": ["ebay"], "all_products": False, "plan": plan}
    return _schedule(actor, **{**values, **EVERY_15, **overrides})


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"preset": "standard"}, "category"),  # a plan needs its category
        ({"preset": "weekly-ish", "category": "Jeans"}, "preset"),
        ({"preset": "standard", "category": "Jeans", "horizon_weeks": 100}, "horizon_weeks"),
        ({"preset": "standard", "category": "Jeans", "dc_holdback": 2}, "dc_holdback"),
        (["standard"], "object"),
    ],
)
def test_bad_plan_schedules_are_refused_on_the_plan_field(tenant_a, staff_actor, plan, message):
    with pytest.raises(ScheduleError, match=message) as caught:
        _plan_schedule(staff_actor, plan)
    assert caught.value.field == "plan"
    assert not Schedule.objects.exists()


def test_a_plan_schedule_fires_a_plan_job_for_the_next_season(tenant_a, staff_actor):
    from planning import selectors as plans

    schedule = _plan_schedule(staff_actor, {"preset": "standard", "category": "Jeans"},
                              marketplaces=["ebay", "etsy"])  # fmt: skip
    _make_due(schedule, timezone.now() - timedelta(minutes=1))
    (fired,) = services.schedules_fire_due()
    assert fired.outcome == "started", fired.message
    (job,) = MarketplaceJob.objects.filter(batch_id=fired.batch_id)
    assert (job.marketplace, job.action) == (plans.MARKETPLACE, plans.ACTION)
    assert job.status == "queued" and job.params["category"] == "Jeans"
    assert job.params["marketplaces"] == ["ebay", "etsy"]
    assert job.params["horizon_weeks"] == 26  # the standard preset
    start = datetime.fromisoformat(str(job.params["season_start"])).date()
    assert start.weekday() == 0 and start > timezone.localdate()  # the next Monday
    # The plan's batch is what the next slot waits for, like any schedule's.
    _make_due(schedule, timezone.now() - timedelta(minutes=1))
    (second,) = services.schedules_fire_due()
    assert second.outcome == "skipped" and f"#{fired.batch_id}" in second.message
