"""A backlog drains through the engine's drains: q2 carries a few drain messages, never one
per event (the hand-off of docs/engine.md), and every event is delivered once."""

from __future__ import annotations

import uuid

from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_q.models import OrmQ

from orchestration.engine import dispatch, marks
from orchestration.engine.slots import drain_slots
from tests.integration.webhooks.receiver import Receiver
from webhooks import services
from webhooks.delivery import close_clients
from webhooks.models import WebhookDelivery

BACKLOG = 1000


def test_a_backlog_is_delivered_by_a_few_drains(tx_tenant_a):
    receiver = Receiver().start()
    try:
        with override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=True,
                               ORCHESTRATION={"DRAIN_SECONDS": 2, "WAKE_AHEAD_SECONDS": 0}):  # fmt: skip
            endpoint = services.endpoint_create(url=receiver.url).endpoint
            now = timezone.now()
            WebhookDelivery.objects.bulk_create(
                WebhookDelivery(event_id=uuid.uuid4(), event_type="job.run.completed",
                                endpoint=endpoint, job_id=i + 1, payload={"n": i},
                                next_attempt_at=now, retry_from=now, created_at=now)
                for i in range(BACKLOG)
            )  # fmt: skip
            schema = connection.schema_name
            marks.signal_work(schema)
            queued = OrmQ.objects.count()
            assert 1 <= queued <= drain_slots()  # drains, not one task per event
            drains = 0
            while WebhookDelivery.objects.exclude(status="delivered").exists():
                assert drains < 50, "the backlog did not drain"
                dispatch.drain()  # what a q2 worker runs for a drain message
                drains += 1
                connection.set_tenant(tx_tenant_a)
                assert OrmQ.objects.count() <= drain_slots() + queued
        assert len(receiver.event_ids()) == BACKLOG == len(receiver.snapshot())
    finally:
        close_clients()
        receiver.stop()
