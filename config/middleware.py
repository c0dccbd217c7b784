"""Request ids: every response carries X-Request-ID, every log line of the request repeats it."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

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
        record.request_id = current_request_id.get()
        return True
