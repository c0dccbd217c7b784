"""Retry policy: exponential backoff with jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random

from orchestration import conf


def backoff_seconds(
    retry_number: int, *, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Delay before retry ``retry_number`` (1-based): base·2^(n-1), jittered to 50-100 %,
    capped, and never shorter than ``retry_after``."""
    base = conf.get("RETRY_BASE_SECONDS")
    cap = conf.get("RETRY_MAX_SECONDS")
    ceiling = min(cap, base * (2 ** (retry_number - 1)))
    delay = ceiling * (rng or random).uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
