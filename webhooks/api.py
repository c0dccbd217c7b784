"""The webhooks part of the JSON API (mounted by api.main under /api/webhooks).

Endpoints (CRUD; the secret is in the creation and rotation answers only), the delivery
log with each delivery's attempts, redelivery and a test ping. Each call is one service
of ``webhooks.services``, the same the admin calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from api.auth import audit, require_write
from api.errors import ApiError, not_found
from api.pagination import MAX_LIMIT, paginate
from api.schemas import ErrorOut
from webhooks import services
from webhooks.models import SUBSCRIBABLE, WebhookAttempt, WebhookDelivery, WebhookEndpoint

router = Router(tags=["webhooks"])
ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


class EndpointOut(Schema):
    id: int
    url: str
    description: str
    event_types: list[str]
    active: bool
    created_at: datetime
    failing_since: datetime | None
    last_success_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str


class EndpointCreatedOut(EndpointOut):
    secret: str = Field(description="The signing secret. Shown this once: store it now.")


class EndpointIn(Schema):
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(default_factory=list, max_length=len(SUBSCRIBABLE),
                                   description=f"Any of {', '.join(SUBSCRIBABLE)}; empty = all")  # fmt: skip
    description: str = Field(default="", max_length=200)
    active: bool = True


class EndpointPatch(Schema):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(default=None, max_length=len(SUBSCRIBABLE))
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class AttemptOut(Schema):
    number: int
    started_at: datetime
    latency_ms: int | None
    status_code: int | None
    error: str
    response_excerpt: str


class DeliveryOut(Schema):
    id: int
    event_id: UUID
    event_type: str
    endpoint_id: int
    job_id: int | None
    run_id: int | None
    batch_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str
    last_latency_ms: int | None


class DeliveryDetailOut(DeliveryOut):
    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class DeliveryPage(Schema):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveryFilters(Schema):
    endpoint: int | None = Field(default=None, ge=1, le=2**62)
    job: int | None = Field(default=None, ge=1, le=2**62)
    status: WebhookDelivery.Status | None = None
    event_type: str | None = Field(default=None, max_length=40)
    cursor: str | None = Field(default=None, max_length=40)
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


class RedeliverIn(Schema):
    ids: list[int] = Field(min_length=1, max_length=1000)


class RedeliveredOut(Schema):
    queued: int


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    found = WebhookEndpoint.objects.filter(pk=endpoint_id).first() if endpoint_id <= 2**62 else None
    if found is None:
        raise not_found("webhook endpoint", endpoint_id)
    return found


def _invalid(exc: services.WebhookError) -> ApiError:
    return ApiError(422, "validation_error", str(exc))


@router.get("/endpoints", response={200: list[EndpointOut], 401: ErrorOut})
def list_endpoints(request: HttpRequest):
    """The tenant's endpoints (never their secrets)."""
    return list(WebhookEndpoint.objects.order_by("pk"))


@router.post("/endpoints", response={201: EndpointCreatedOut, **ERRORS})
def create_endpoint(request: HttpRequest, body: EndpointIn):
    """Create an endpoint. The answer holds its signing secret, this once."""
    who = require_write(request)
    try:
        with transaction.atomic():
            created = services.endpoint_create(url=body.url, event_types=body.event_types,
                                               description=body.description, active=body.active,
                                               created_by=who.label)  # fmt: skip
            audit(request, "webhook.create", [("webhook_endpoint", created.endpoint.pk)],
                  details={"url": created.endpoint.url})  # fmt: skip
    except services.WebhookError as exc:
        raise _invalid(exc) from None
    out = EndpointOut.model_validate(created.endpoint).model_dump()
    return Status(201, {**out, "secret": created.secret})


@router.get(
    "/endpoints/{int:endpoint_id}", response={200: EndpointOut, 401: ErrorOut, 404: ErrorOut}
)
def get_endpoint(request: HttpRequest, endpoint_id: int):
    return _endpoint(endpoint_id)


@router.patch("/endpoints/{int:endpoint_id}", response={200: EndpointOut, **ERRORS})
def update_endpoint(request: HttpRequest, endpoint_id: int, body: EndpointPatch):
    """Change the URL, events, description, or enable/disable (enabling clears the disabled
    notice and resumes pending deliveries)."""
    require_write(request)
    _endpoint(endpoint_id)
    changes = body.model_dump(exclude_unset=True)
    try:
        with transaction.atomic():
            endpoint = services.endpoint_update(endpoint_id=endpoint_id, **changes)
            audit(request, "webhook.update", [("webhook_endpoint", endpoint_id)],
                  details={"fields": sorted(changes)})  # fmt: skip
            return endpoint
    except services.WebhookError as exc:
        raise _invalid(exc) from None


@router.delete("/endpoints/{int:endpoint_id}", response={204: None, **ERRORS})
def delete_endpoint(request: HttpRequest, endpoint_id: int):
    """Delete an endpoint and its delivery log."""
    require_write(request)
    _endpoint(endpoint_id)
    with transaction.atomic():
        services.endpoint_delete(endpoint_id=endpoint_id)
        audit(request, "webhook.delete", [("webhook_endpoint", endpoint_id)])
    return Status(204, None)


@router.post(
    "/endpoints/{int:endpoint_id}/rotate-secret", response={200: EndpointCreatedOut, **ERRORS}
)
def rotate_secret(request: HttpRequest, endpoint_id: int):
    """A new signing secret, shown this once; later deliveries are signed with it."""
    require_write(request)
    _endpoint(endpoint_id)
    with transaction.atomic():
        created = services.endpoint_rotate_secret(endpoint_id=endpoint_id)
        audit(request, "webhook.rotate_secret", [("webhook_endpoint", endpoint_id)])
    return {**EndpointOut.model_validate(created.endpoint).model_dump(), "secret": created.secret}


@router.post("/endpoints/{int:endpoint_id}/ping", response={202: DeliveryOut, **ERRORS})
def ping_endpoint(request: HttpRequest, endpoint_id: int):
    """Queue a signed ``ping`` event; its outcome appears in the delivery log."""
    require_write(request)
    _endpoint(endpoint_id)
    try:
        return Status(202, services.endpoint_ping(endpoint_id=endpoint_id))
    except services.WebhookError as exc:
        raise ApiError(409, "conflict", str(exc)) from None


@router.get("/deliveries", response={200: DeliveryPage, 401: ErrorOut, 422: ErrorOut})
def list_deliveries(request: HttpRequest, filters: Query[DeliveryFilters]):
    """The delivery log, newest first; filter by endpoint, job, status or event type."""
    rows = WebhookDelivery.objects.all()
    if filters.endpoint:
        rows = rows.filter(endpoint_id=filters.endpoint)
    if filters.job:
        rows = rows.filter(job_id=filters.job)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.event_type:
        rows = rows.filter(event_type=filters.event_type)
    items, next_cursor = paginate(rows, cursor=filters.cursor, limit=filters.limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/deliveries/{int:delivery_id}",
            response={200: DeliveryDetailOut, 401: ErrorOut, 404: ErrorOut})  # fmt: skip
def get_delivery(request: HttpRequest, delivery_id: int):
    """One delivery: its payload and every attempt (status code, latency, answer excerpt)."""
    row = WebhookDelivery.objects.filter(pk=delivery_id).first() if delivery_id <= 2**62 else None
    if row is None:
        raise not_found("webhook delivery", delivery_id)
    attempts = list(WebhookAttempt.objects.filter(delivery_id=row.pk).order_by("number", "pk"))
    return {
        **DeliveryOut.model_validate(row).model_dump(),
        "payload": row.payload,
        "attempt_log": attempts,
    }


@router.post("/deliveries/redeliver", response={202: RedeliveredOut, **ERRORS})
def redeliver(request: HttpRequest, body: RedeliverIn):
    """Send these deliveries again: the same event id and body, now (unknown ids: 404)."""
    require_write(request)
    ids = sorted(set(body.ids))
    found = set(WebhookDelivery.objects.filter(pk__in=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ApiError(404, "not_found", "webhook deliveries not found", details={"ids": missing})
    with transaction.atomic():
        queued = services.deliveries_redeliver(delivery_ids=ids)
        audit(request, "webhook.redeliver", [("webhook_delivery", i) for i in ids])
    return Status(202, {"queued": queued})
