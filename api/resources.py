"""Resources: queue depth and limits per resource; pause and resume."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from ninja import Router

from api import schemas as s
from api.auth import audit, require_write
from api.errors import not_found
from orchestration import selectors, services
from orchestration.engine.claims import resource_policies

router = Router(tags=["resources"])
ERRORS = {401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut}


@router.get("", response={200: list[s.ResourceOut], 401: s.ErrorOut})
def list_resources(request: HttpRequest):
    """Per resource: jobs waiting, backing off, running (against its limit), pending, paused."""
    resource_policies()  # every declared resource has its row
    return selectors.queue_depth()


def _resource(key: str) -> dict:
    if key not in resource_policies():
        raise not_found("resource", key[:64])
    return next(r for r in selectors.queue_depth() if r["key"] == key)


@router.post("/{key}/pause", response={200: s.ResourceOut, **ERRORS})
def pause_resource(request: HttpRequest, key: str):
    """Nothing new starts on this resource (running jobs finish)."""
    require_write(request)
    _resource(key)
    with transaction.atomic():
        services.resource_pause(key=key)
        audit(request, "resource.pause", [("resource", key)])
    return _resource(key)


@router.post("/{key}/resume", response={200: s.ResourceOut, **ERRORS})
def resume_resource(request: HttpRequest, key: str):
    require_write(request)
    _resource(key)
    with transaction.atomic():
        services.resource_resume(key=key)
        audit(request, "resource.resume", [("resource", key)])
    return _resource(key)
