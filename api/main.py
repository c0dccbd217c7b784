"""The JSON API (django-ninja): typed schemas, generated OpenAPI at /api/openapi.json, docs at
/api/docs. Served on each tenant's host; the tenant comes from the Host header (the tenant
middleware ran before), the caller from a Bearer token or a staff session.

Every error is ``{"error", "message", "request_id", "details"}`` (see ``api.errors``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.parser import Parser
from ninja.throttling import AuthRateThrottle

from api.auth import StaffSessionAuth, TokenAuth
from api.errors import ApiError, error_response
from config.middleware import database_unavailable

logger = logging.getLogger("api")


class CallerThrottle(AuthRateThrottle):
    """Requests per caller (token or staff user, keyed with the tenant) per window, at the rate
    ``settings.API_RATE_LIMIT`` says now (read per request: a changed setting applies at once)."""

    def __init__(self) -> None:
        super().__init__(settings.API_RATE_LIMIT)

    def allow_request(self, request: HttpRequest) -> bool:
        if self.rate != settings.API_RATE_LIMIT:
            self.rate = settings.API_RATE_LIMIT
            self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)


class StrictJsonParser(Parser):
    """JSON bodies without NUL characters (PostgreSQL text cannot hold them: refused as input
    here rather than failing at the database)."""

    def parse_body(self, request: HttpRequest):
        body = request.body
        if b"\\u0000" in body:
            raise ApiError(
                422,
                "validation_error",
                "text may not contain NUL (\\u0000) characters",
                details=[{"field": None, "in": "body", "message": "NUL character"}],
            )
        return super().parse_body(request)


class CachedSchemaAPI(NinjaAPI):
    """The OpenAPI document is built once per process (per path prefix), not per request:
    building it took ~150 ms of CPU, so /api/openapi.json was a cheap way to load a server."""

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        key = (path_prefix, tuple(sorted((path_params or {}).items())))
        cache = self.__dict__.setdefault("_schema_cache", {})
        if key not in cache:
            cache[key] = super().get_openapi_schema(
                path_prefix=path_prefix, path_params=path_params
            )
        return cache[key]


api = CachedSchemaAPI(
    parser=StrictJsonParser(),
    title="Marketplace publishing API",
    version="1",
    description=(
        "Jobs, batches, products, resources, uploads, webhooks and stock plans of one tenant "
        "(the tenant is the host you call). Authenticate with `Authorization: Bearer <token>` "
        "(tokens are made in the admin or with `manage.py api_token`) or a staff session. "
        "Every response carries `X-Request-ID`; every error is "
        '`{"error": code, "message": ..., "request_id": ..., "details": ...}`.'
    ),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    auth=[TokenAuth(), StaffSessionAuth()],
    throttle=[CallerThrottle()],
)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError):
    return error_response(
        request, exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


def _field(loc) -> str | None:
    """``("body", "body", "products", "ids")`` → ``"products.ids"`` (where, then the parameter
    name ninja adds for a schema argument, then the field path)."""
    parts = [str(part) for part in loc[1:]]
    if len(parts) > 1 and parts[0] in {"body", "filters", "path", "payload"}:
        parts = parts[1:]
    return ".".join(parts) or None


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    fields = [
        {
            "field": _field(err.get("loc", ())),
            "in": (err.get("loc") or ["body"])[0],
            "message": err.get("msg", "invalid"),
            "type": err.get("type"),
        }
        for err in exc.errors
    ]
    return error_response(request, 422, "validation_error", "invalid input", details=fields)


@api.exception_handler(DjangoValidationError)
def _django_validation_error(request: HttpRequest, exc: DjangoValidationError):
    details = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    return error_response(request, 422, "validation_error", "invalid input", details=details)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError):
    return error_response(
        request,
        401,
        "unauthorized",
        "a valid API token of this tenant (Authorization: Bearer …) or a staff session is needed",
        headers={"WWW-Authenticate": "Bearer"},
    )


@api.exception_handler(Throttled)
def _throttled(request: HttpRequest, exc: Throttled):
    wait = int(exc.wait or 1) or 1
    return error_response(
        request,
        429,
        "rate_limited",
        f"too many requests; retry in {wait} s",
        details={"retry_after": wait},
        headers={"Retry-After": str(wait)},
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    if isinstance(exc.__cause__, ApiError):  # raised by the body parser, wrapped by ninja
        return _api_error(request, exc.__cause__)
    codes = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    return error_response(
        request, exc.status_code, codes.get(exc.status_code, "error"), str(exc.message)
    )


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: Exception):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(
        request,
        413,
        "too_large",
        f"request body over {limit:,} bytes",
        details={"limit_bytes": limit},
    )


@api.exception_handler(DataError)
def _data_error(request: HttpRequest, exc: Exception):
    # A value the database cannot store (a NUL in a query parameter, an out-of-range number
    # the schema let through): the input's fault, answered as such.
    return error_response(
        request, 422, "validation_error", "a value cannot be stored (e.g. a NUL character)"
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception):
    return error_response(request, 404, "not_found", "not found")


@api.exception_handler(ObjectDoesNotExist)
def _missing(request: HttpRequest, exc: Exception):
    return error_response(request, 404, "not_found", "not found")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: Exception):
    return error_response(request, 403, "forbidden", str(exc) or "forbidden")


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def _database_away(request: HttpRequest, exc: Exception):
    # A restart, a lost connection, a deadlock or a lock timeout: worth a retry, not a bug.
    logger.warning("database error in %s %s: %s", request.method, request.path, exc)
    return database_unavailable(request)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception):
    # A bug, not an input: logged with the request id (the log filter adds it), answered as
    # JSON without internals.
    logger.exception("unexpected error in %s %s", request.method, request.path)
    return error_response(
        request, 500, "internal_error", "unexpected error; quote the request id when reporting"
    )


api.add_router("/jobs", "api.jobs.router")
api.add_router("/batches", "api.batches.router")
api.add_router("/products", "api.products.router")
api.add_router("/resources", "api.resources.router")
api.add_router("/uploads", "uploads.api.router")
api.add_router("/webhooks", "webhooks.api.router")
api.add_router("/plans", "planning.api.router")
api.add_router("/schedules", "scheduler.api.router")
api.add_router("/operations", "operations.api.router")


@csrf_exempt  # it changes nothing; the CSRF middleware would answer its own HTML page
def unknown_endpoint(request: HttpRequest, rest: str = ""):
    """Any other path under /api/: the API's JSON 404, not the site's HTML page."""
    return error_response(request, 404, "not_found", f"no API endpoint at {request.path[:200]}")
