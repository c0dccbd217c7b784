"""The watchdog's operator tick, tenant by tenant: due schedules fire, stalled operations
are sent again, the nightly prune is claimed; a tenant that cannot take part is passed over."""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from audit.services import Actor
from operations import retention
from operations import services as operations
from operations.models import Operation
from orchestration.watchdog import periodic_tick
from scheduler import services
from scheduler.models import Schedule


def test_one_tick_does_each_tenants_periodic_work(tx_tenant_a, monkeypatch):
    from tests.factories import ProductFactory

    ProductFactory(sku="TICK-1")
    actor = Actor("staff", "admin")
    schedule = services.schedule_save(
        actor=actor, name="t", action="sync", marketplaces=["ebay"], all_products=True,
        skus="", priority=0, sequential=False, cron="", every_minutes=5, timezone="UTC",
        active=True,
    )  # fmt: skip
    Schedule.objects.filter(pk=schedule.pk).update(
        next_run_at=timezone.now() - timedelta(minutes=1)
    )
    operation = operations.operation_create(kind="retry", job_filter={}, actor=actor)
    Operation.objects.filter(pk=operation.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    monkeypatch.setattr(retention, "_last_check", 0.0)  # the prune check runs every 10 min
    schema = connection.schema_name
    with schema_context("test_beta"):  # a tenant without the table is passed over
        from django.db import connection as beta

        with beta.cursor() as cursor:
            cursor.execute("ALTER TABLE scheduler_schedule RENAME TO scheduler_schedule_gone")
    try:
        connection.set_schema_to_public()
        result = periodic_tick(now=timezone.now().replace(hour=23))
    finally:
        with schema_context("test_beta"), connection.cursor() as cursor:
            cursor.execute("ALTER TABLE scheduler_schedule_gone RENAME TO scheduler_schedule")
    assert result["fired"] == {schema: 1}
    assert result["operations"] == {schema: 1}
    assert result["pruned"].get(schema) == 1
    with schema_context(schema):
        assert retention.policy().last_pruned_at is not None


def test_the_tick_deletes_old_queue_results(tx_tenant_a, monkeypatch, settings):
    """django-q2 stores a row per message run and prunes none with save_limit 0: the tick
    deletes successes after Q_KEEP_SUCCESS_HOURS and failures after Q_KEEP_FAILURE_DAYS,
    every CHECK_EVERY seconds at most."""
    from django_q.models import Task

    settings.Q_KEEP_SUCCESS_HOURS, settings.Q_KEEP_FAILURE_DAYS = 24, 30
    now = timezone.now()
    ages = {"ok-new": (True, 1), "ok-old": (True, 25), "bad-new": (False, 24 * 29),
            "bad-old": (False, 24 * 31)}  # fmt: skip
    for name, (success, hours) in ages.items():
        when = now - timedelta(hours=hours)
        Task.objects.create(
            id=name.ljust(32, "0"), name=name, func="tenants.tasks.describe_tenant",
            started=when, stopped=when, success=success,
        )  # fmt: skip
    monkeypatch.setattr(retention, "_queue_results_next", None)
    connection.set_schema_to_public()
    result = periodic_tick(now=now)
    assert result["queue_results"] == {"q2_successes": 1, "q2_failures": 1}
    assert set(Task.objects.values_list("name", flat=True)) == {"ok-new", "bad-new"}
    Task.objects.filter(name="ok-new").update(stopped=now - timedelta(days=2))
    assert periodic_tick(now=now)["queue_results"] == {}  # looked less than 10 min ago
    settings.Q_KEEP_SUCCESS_HOURS = 0  # kept for ever
    assert retention.prune_queue_results(now, force=True) == {"q2_failures": 0}
    assert Task.objects.filter(name="ok-new").exists()


def test_a_backlog_of_queue_results_is_deleted_a_second_at_a_time(tx_tenant_a, monkeypatch):
    """Rows left when the time is up: the next look comes after QUEUE_RESULTS_SOON, not 10 min."""
    from django_q.models import Task

    old = timezone.now() - timedelta(days=400)
    Task.objects.bulk_create(
        Task(id=f"{i:032d}", name=f"b{i}", func="x", started=old, stopped=old, success=True)
        for i in range(3 * retention.BATCH)
    )
    monkeypatch.setattr(retention, "QUEUE_RESULTS_SECONDS", 0.0)  # time is up at once
    monkeypatch.setattr(retention, "_queue_results_next", None)
    assert retention.prune_queue_results() == {"q2_successes": 0, "q2_failures": 0}
    assert retention._queue_results_next - time.monotonic() <= retention.QUEUE_RESULTS_SOON
    monkeypatch.setattr(retention, "QUEUE_RESULTS_SECONDS", 60.0)
    assert retention.prune_queue_results(force=True)["q2_successes"] == 3 * retention.BATCH
    assert retention._queue_results_next - time.monotonic() > retention.QUEUE_RESULTS_SOON
