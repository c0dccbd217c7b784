"""The watchdog's operator tick, tenant by tenant: due schedules fire, stalled operations
are sent again, the nightly prune is claimed; a tenant that cannot take part is passed over."""

from __future__ import annotations

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
