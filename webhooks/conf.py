"""Webhook settings, read at call time: ``settings.WEBHOOKS = {...}`` or environment
variables ``WEBHOOKS_<KEY>`` (worker subprocesses in tests use the latter)."""

from __future__ import annotations

import os

from django.conf import settings

DEFAULTS: dict[str, float] = {
    "LEASE_SECONDS": 60.0,  # a claimed delivery is redelivered after this if not recorded
    "CONNECT_TIMEOUT": 5.0,
    "TIMEOUT": 10.0,  # whole request: connect, send, first byte and the capped body
    "RESPONSE_MAX_BYTES": 65536,  # read at most this much of an answer
    "EXCERPT_CHARS": 1000,  # of which this much is kept in the attempt log
    "RETRY_BASE_SECONDS": 30.0,  # backoff: base * 2**(n-1), jittered 50-100 %, capped
    "RETRY_MAX_SECONDS": 3600.0,
    "RETRY_WINDOW_SECONDS": 86400.0,  # retries stop (FAILED) after about a day
    "DISABLE_AFTER_SECONDS": 86400.0,  # an endpoint failing this long is disabled
    "CONCURRENCY": 8,  # requests in flight per drain
    "CLAIM_MAX": 128,  # deliveries claimed at once, at most
    "TURN_SHARE": 0.5,  # of a tenant's turn, given to deliveries while jobs wait too
    "PASS_SECONDS": 0.25,  # while a turn runs jobs, deliveries get a pass this often
}


def get(key: str) -> float:
    env = os.environ.get(f"WEBHOOKS_{key}")
    if env is not None:
        return float(env)
    return float(getattr(settings, "WEBHOOKS", {}).get(key, DEFAULTS[key]))


def allow_private_urls() -> bool:
    """Endpoints on private, loopback or link-local addresses (development and tests)."""
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE_URLS", False))
