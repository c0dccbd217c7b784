"""Figures from samples: percentiles, distributions, rates, durations."""

from __future__ import annotations

import math
from typing import Any


def rate(count: float, seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return round(count / seconds, 2)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted, non-empty list."""
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def distribution(values: list[float], digits: int = 1) -> dict[str, Any]:
    """count, mean, p50, p95, p99, min, max of ``values`` (rounded to ``digits``)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), digits),
        "p50": round(percentile(ordered, 50), digits),
        "p95": round(percentile(ordered, 95), digits),
        "p99": round(percentile(ordered, 99), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one for an even count), whole:
    its other figures belong to the same run. A run without ``key`` sorts as 0."""
    ordered = sorted(runs, key=lambda run: run.get(key) or 0.0)
    return dict(ordered[(len(ordered) - 1) // 2])


def seconds_between(start, end) -> float | None:
    """``end - start`` in seconds (3 decimals); None if either is missing."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
