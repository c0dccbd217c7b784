"""One place that turns marketplace failures into the engine's step errors.

Retryable: network errors, timeouts, 5xx, 408 and 429 (``Retry-After`` becomes
``retry_after``). Permanent: every other 4xx, carrying the marketplace's own
message (eBay ``errors[].message``, Etsy ``error``, Vinted ``message``) so staff
read what the marketplace said. A timeout is a ``StepTimeout`` naming the step and
its limit. Nothing here ever includes request headers, so credentials stay out.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

from django.utils.html import strip_tags

from orchestration.steps import (
    PermanentStepError,
    RetryableStepError,
    StepContext,
    StepError,
    StepTimeout,
)

LABELS = {"ebay": "eBay", "etsy": "Etsy", "vinted": "Vinted"}
RETRYABLE_4XX = frozenset({408, 425, 429})
EXCERPT_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def plain_excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A non-JSON error body (a proxy's HTML page, a stack trace) as a short plain text for
    a job's error: tags and control/bidi characters out, whitespace collapsed, truncated.
    Pages still escape it when they render it; this keeps stored errors readable and small.
    """
    text = strip_tags(str(text))
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label(marketplace: str) -> str:
    return LABELS.get(marketplace, marketplace)


def parse_retry_after(value: str | float | int | None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def marketplace_message(marketplace: str, body: Any) -> str:
    """The human message in a marketplace's error body, in that marketplace's shape."""
    if not isinstance(body, Mapping):
        return plain_excerpt(body) if body else ""
    if isinstance(body.get("errors"), list) and body["errors"]:
        # eBay: {"errors": [{"errorId": 25002, "message": "...", "longMessage": "..."}]}
        # Vinted: {"errors": [{"field": "title", "value": "..."}]} next to "message".
        parts = []
        for err in body["errors"]:
            if not isinstance(err, Mapping):
                continue
            text = err.get("message") or err.get("longMessage") or err.get("value") or ""
            if "errorId" in err:
                text = f"[{err['errorId']}] {text}"
            elif "field" in err:
                text = f"{err['field']}: {text}"
            parts.append(str(text))
        if marketplace == "vinted" and body.get("message"):
            parts.insert(0, str(body["message"]))
        return "; ".join(p for p in parts if p)
    # Etsy: {"error": "..."}; Vinted: {"code": 99, "message": "..."}
    return str(body.get("error") or body.get("message") or body.get("error_description") or "")


def error_for_status(
    *,
    marketplace: str,
    step_type: str,
    operation: str,
    status: int,
    body: Any = None,
    retry_after: str | float | int | None = None,
) -> StepError:
    """Classify a failed answer (HTTP status, or the status a Vinted bridge reply carries)."""
    message = marketplace_message(marketplace, body) or f"HTTP {status}"
    detail = {
        "marketplace": marketplace,
        "step": step_type,
        "operation": operation,
        "status": status,
        "response": body if isinstance(body, Mapping) else None,
    }
    who = label(marketplace)
    if status >= 500 or status in RETRYABLE_4XX:
        wait = parse_retry_after(retry_after)
        hint = f", retry after {wait:g}s" if wait is not None else ""
        return RetryableStepError(
            f"{who} answered {status} to {operation} in step {step_type!r}{hint}: {message}",
            retry_after=wait,
            detail=detail,
        )
    return PermanentStepError(
        f"{who} rejected {operation} in step {step_type!r} (HTTP {status}): {message}",
        detail=detail,
    )


def step_timeout(ctx: StepContext, *, marketplace: str, operation: str) -> StepTimeout:
    """The step ran out of time waiting for the marketplace."""
    return StepTimeout(
        f"step {ctx.step_type!r} timed out after {ctx.timeout:g}s "
        f"waiting for {label(marketplace)} ({operation})",
        detail={
            "step": ctx.step_type,
            "limit_seconds": ctx.timeout,
            "marketplace": marketplace,
            "operation": operation,
        },
    )


def network_error(
    ctx: StepContext, *, marketplace: str, operation: str, exc: BaseException
) -> RetryableStepError:
    """Connection refused, reset or dropped mid-answer: worth another attempt."""
    return RetryableStepError(
        f"{label(marketplace)} connection failed during {operation} "
        f"in step {ctx.step_type!r}: {type(exc).__name__}: {exc}",
        detail={"step": ctx.step_type, "marketplace": marketplace, "operation": operation},
    )


def disconnected(ctx: StepContext, *, marketplace: str, operation: str) -> RetryableStepError:
    """A session (the Vinted bridge) closed while a command was in flight: the effect may or
    may not have landed, which the step's check sorts out on the retry."""
    return RetryableStepError(
        f"{label(marketplace)} bridge disconnected during {operation} in step {ctx.step_type!r}",
        detail={"step": ctx.step_type, "marketplace": marketplace, "operation": operation},
    )


def busy(ctx: StepContext, *, marketplace: str) -> RetryableStepError:
    """The seller's single session is held by someone else: try again later."""
    return RetryableStepError(
        f"{label(marketplace)} bridge busy in step {ctx.step_type!r}: "
        "another session is open for this seller",
        detail={"step": ctx.step_type, "marketplace": marketplace},
    )


def refused(ctx: StepContext, *, marketplace: str, what: str) -> PermanentStepError:
    """Credentials or configuration the marketplace will never accept: staff must fix them."""
    return PermanentStepError(
        f"{label(marketplace)} bridge refused {what} in step {ctx.step_type!r}",
        detail={"step": ctx.step_type, "marketplace": marketplace},
    )
