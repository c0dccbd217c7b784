"""Request ids: every response carries X-Request-ID, every log line of the request repeats it.
A database out of reach is answered 503 with Retry-After, not 500."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils.html import escape
from django.views import defaults
from django_tenants.middleware.main import TenantMainMiddleware

from api.errors import error_response

logger = logging.getLogger(__name__)

_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default="-"
)


class RequestIdMiddleware:
    """Honours a sane incoming X-Request-ID (8 to 64 of ``[A-Za-z0-9._-]``), else makes one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        token = current_request_id.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id == "-":  # django.request logs a 4xx/5xx after the middleware is done
            request_id = getattr(getattr(record, "request", None), "request_id", "-")
        record.request_id = request_id
        return True


# --- the database out of reach -------------------------------------------------------------
# While PostgreSQL restarts (or a network hop fails) every request fails at its first query,
# usually the tenant lookup. A 503 with Retry-After says "try again shortly", which clients
# and the admin's scripts do; a 500 says "bug".

DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_MESSAGE = "the database did not answer; try again in a few seconds"


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: the API's JSON error under /api/, a short page elsewhere; both
    carry the request id."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.path.startswith("/api/"):
        return error_response(request, 503, "unavailable", UNAVAILABLE_MESSAGE, headers=headers)
    request_id = getattr(request, "request_id", None)
    page = (
        "<!doctype html><title>Unavailable</title><h1>Unavailable</h1>"
        f"<p>{escape(UNAVAILABLE_MESSAGE.capitalize())}.</p>"
        f"<p>Request id: <code>{escape(request_id or '-')}</code></p>"
    )
    return HttpResponse(page, status=503, headers=headers)


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants' tenant lookup, answering 503 (not 500) when the database is out of reach."""

    def process_request(self, request):
        try:
            return super().process_request(request)
        except DATABASE_ERRORS as exc:
            logger.warning("database out of reach for %s %s: %s", request.method, request.path, exc)
            return database_unavailable(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a lost database (inside a view) is a 503 too; anything else is Django's
    own 500 page. (Under DEBUG, Django shows its technical page instead.)"""
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_ERRORS):
        return database_unavailable(request)
    return defaults.server_error(request)
