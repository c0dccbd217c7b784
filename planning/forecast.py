"""The arithmetic of a plan, written plainly (pure Python, no database): weekly demand
forecasts and the quantities they lead to.

Model: **seasonal naïve with a level adjustment** when a series has at least a year and
``LEVEL_WEEKS`` of history: week h of the season is the same week a year earlier, scaled
by how the last ``LEVEL_WEEKS`` weeks compare with the same weeks a year before (clipped
to ``LEVEL_CLIP``). With less history, **simple exponential smoothing** (``ALPHA``): a flat
forecast at the smoothed level. Both are standard baselines a planner can check by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SEASON = 52  # weeks
LEVEL_WEEKS = 8
LEVEL_CLIP = (0.5, 2.0)
ALPHA = 0.3


def seasonal_naive(history: Sequence[float], horizon: int) -> list[float]:
    """``horizon`` weeks after ``history`` (needs ``SEASON + LEVEL_WEEKS`` weeks of it)."""
    n = len(history)
    recent = sum(history[n - LEVEL_WEEKS :])
    year_before = sum(history[n - SEASON - LEVEL_WEEKS : n - SEASON])
    level = recent / year_before if year_before > 0 else 1.0
    level = min(max(level, LEVEL_CLIP[0]), LEVEL_CLIP[1])
    return [history[n - SEASON + (h % SEASON)] * level for h in range(horizon)]


def exponential_smoothing(
    history: Sequence[float], horizon: int, alpha: float = ALPHA
) -> list[float]:
    """Flat forecast at the exponentially smoothed level (0 for an empty history)."""
    if not history:
        return [0.0] * horizon
    level = float(history[0])
    for value in history[1:]:
        level = alpha * value + (1 - alpha) * level
    return [level] * horizon


def forecast_series(history: Sequence[float], horizon: int) -> tuple[str, list[float]]:
    """(method, weekly forecast of ``horizon`` weeks) for one series."""
    if len(history) >= SEASON + LEVEL_WEEKS:
        return "seasonal_naive", seasonal_naive(history, horizon)
    return "exponential_smoothing", exponential_smoothing(history, horizon)


def round_to_packs(units: float, pack_size: int) -> int:
    """Whole packs, rounded up (a store never gets less than the plan asks for)."""
    if units <= 0:
        return 0
    # A float a hair above a whole pack (1e-9) must not cost a pack.
    return math.ceil(units / pack_size - 1e-9) * pack_size


def quantity_for(
    demand: float, *, multiplier: float, dc_holdback: float, pack_size: int
) -> dict[str, Any]:
    """Forecast demand → stock: x safety multiplier, minus what the DC holds back, in packs."""
    gross = demand * multiplier
    holdback = gross * dc_holdback
    net = gross - holdback
    return {
        "demand": round(demand, 3),
        "gross": round(gross, 3),
        "holdback": round(holdback, 3),
        "net": round(net, 3),
        "quantity": round_to_packs(net, pack_size),
    }
