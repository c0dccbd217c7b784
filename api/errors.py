"""The API's one error shape: ``{"error", "message", "request_id", "details"}`` with a 4xx status.

Services raise their own exceptions; the handlers in ``api.main`` map each to a code and a
status here, so no door invents its own format and no input reaches a 500 page.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse


class ApiError(Exception):
    """Raise from an endpoint to answer ``status`` with a JSON error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def not_found(what: str, ident: Any) -> ApiError:
    """404 for an id this tenant does not have (another tenant's ids look the same)."""
    return ApiError(404, "not_found", f"{what} {ident} not found")


def conflict(message: str, **details: Any) -> ApiError:
    return ApiError(409, "conflict", message, details=details or None)


def error_response(
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {
        "error": code,
        "message": message,
        "request_id": getattr(request, "request_id", None),
        "details": details,
    }
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
