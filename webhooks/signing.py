"""Signing: ``X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``.

The timestamp (``X-Webhook-Timestamp``, Unix seconds) is part of what is signed, so a
receiver that rejects old timestamps cannot be replayed an old request. ``verify`` is
what a receiver does (docs/webhooks.md has the same in a few lines of plain Python).
"""

from __future__ import annotations

import hashlib
import hmac
import time

ID_HEADER = "X-Webhook-Id"
EVENT_HEADER = "X-Webhook-Event"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    *,
    body: bytes,
    timestamp: str,
    signature_header: str,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when the signature matches ``body`` and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent, body), signature_header or "")
