"""Webhook services: the only writers of endpoints and of deliveries outside the engine's
outbox (``webhooks.outbox``) and the workers' delivery (``webhooks.delivery``). The admin,
the API and the tests all call these."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from config.netsafety import UnsafeURL, check_url
from orchestration.engine import marks
from tenants.db import current_schema
from webhooks import conf
from webhooks.models import SUBSCRIBABLE, EventType, WebhookDelivery, WebhookEndpoint, new_secret


class WebhookError(ValueError):
    """Bad input for a webhook service (the message says what to fix)."""


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown to the caller once; never readable again


def check_endpoint_url(url: str) -> str:
    """The URL, if webhooks may be sent there: http(s) and every address it resolves to
    public (private, loopback and link-local only with ``WEBHOOKS_ALLOW_PRIVATE_URLS``)."""
    url = (url or "").strip()
    if not url:
        raise WebhookError("a URL is required")
    if len(url) > 2000:
        raise WebhookError("the URL is longer than 2000 characters")
    try:
        check_url(url, allow_private=conf.allow_private_urls())
    except UnsafeURL as exc:
        raise WebhookError(f"URL refused: {exc}") from None
    return url


def check_event_types(event_types: Iterable[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(event_types or []))
    unknown = [t for t in chosen if t not in SUBSCRIBABLE]
    if unknown:
        raise WebhookError(
            f"unknown event type(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(SUBSCRIBABLE)}"
        )
    return chosen


def endpoint_create(
    *,
    url: str,
    event_types: Iterable[str] | None = None,
    description: str = "",
    active: bool = True,
    created_by: str = "",
) -> CreatedEndpoint:
    """A new endpoint with a new secret (returned here once)."""
    endpoint = WebhookEndpoint(
        url=check_endpoint_url(url), event_types=check_event_types(event_types),
        description=(description or "")[:200], active=active, secret=new_secret(),
        created_by=created_by,
    )  # fmt: skip
    endpoint.save()
    return CreatedEndpoint(endpoint, endpoint.secret)


def endpoint_update(
    *,
    endpoint_id: int,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    description: str | None = None,
    active: bool | None = None,
) -> WebhookEndpoint:
    """Change an endpoint. Re-enabling one clears its disabled notice and makes its pending
    deliveries due now, with a fresh retry window."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        if url is not None:
            endpoint.url = check_endpoint_url(url)
        if event_types is not None:
            endpoint.event_types = check_event_types(event_types)
        if description is not None:
            endpoint.description = description[:200]
        resumed = active is True and not endpoint.active
        if active is not None:
            endpoint.active = active
        if resumed:
            endpoint.disabled_at, endpoint.disabled_reason = None, ""
            endpoint.failing_since = None
            now = timezone.now()
            endpoint.deliveries.filter(status=WebhookDelivery.Status.PENDING).update(
                next_attempt_at=now, retry_from=now
            )
            _signal_workers()
        endpoint.save()
    return endpoint


def endpoint_rotate_secret(*, endpoint_id: int) -> CreatedEndpoint:
    """A new secret (returned once); deliveries sent from now on are signed with it."""
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return CreatedEndpoint(endpoint, endpoint.secret)


def endpoint_delete(*, endpoint_id: int) -> None:
    """Delete an endpoint and its delivery log (the database cascades)."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).delete()


def endpoint_ping(*, endpoint_id: int) -> WebhookDelivery:
    """Queue a signed ``ping`` event for the endpoint; the workers send it like any event."""
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    if not endpoint.active:
        raise WebhookError(f"endpoint {endpoint_id} is disabled; enable it to ping it")
    now = timezone.now()
    event_id = uuid.uuid4()
    payload = {
        "id": str(event_id), "type": EventType.PING.value,
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "tenant": current_schema(),
        "endpoint_id": endpoint.pk, "idempotency_key": f"event-{event_id}",
    }  # fmt: skip
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            event_id=event_id, event_type=EventType.PING, endpoint=endpoint, payload=payload,
            next_attempt_at=now, retry_from=now, created_at=now,
        )  # fmt: skip
        _signal_workers()
    return delivery


def deliveries_redeliver(*, delivery_ids: Iterable[int]) -> int:
    """Send these deliveries again (same event id, same body), now, with a fresh retry
    window; delivered and failed ones become pending. Returns how many were queued."""
    ids = list(delivery_ids)
    now = timezone.now()
    with transaction.atomic():
        queued = WebhookDelivery.objects.filter(pk__in=ids).update(
            status=WebhookDelivery.Status.PENDING, next_attempt_at=now, retry_from=now,
            delivered_at=None,
        )  # fmt: skip
        if queued:
            _signal_workers()
    return queued


def _signal_workers() -> None:
    """A drain will come for this tenant (its queue row is marked in this transaction)."""
    marks.signal_work_on_commit(current_schema())
