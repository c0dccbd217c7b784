"""A plan's parameters: one typed schema shared by the API, the admin form and the command,
the three shipped presets, and how a preset and overrides become validated parameters.

Nothing is queued until ``plan_parameters`` has returned: invalid input raises
``pydantic.ValidationError`` (the API answers 422 with its field errors; the admin shows them
on the form; the command exits with them).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, Literal

from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

Strategy = Literal["none", "weekly", "bi-weekly"]
STRATEGIES: tuple[str, ...] = ("none", "weekly", "bi-weekly")

# Safety stock per replenishment strategy: with no replenishment the season's stock must cover
# the forecast's error alone; weekly top-ups need the least; every two weeks a little more.
SAFETY_MULTIPLIERS: dict[str, float] = {"none": 1.25, "weekly": 1.20, "bi-weekly": 1.22}
MARKETPLACES: tuple[str, ...] = ("ebay", "etsy", "vinted")


class PlanParameters(BaseModel):
    """What a plan needs. ``safety_multiplier`` unset: the strategy's (SAFETY_MULTIPLIERS)."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1, max_length=120, description="Product category to plan")
    season_start: date = Field(description="First day of the season (its week is week 1)")
    season_end: date = Field(description="Last day of the season")
    horizon_weeks: int = Field(ge=1, le=52, description="Weeks to forecast, 1-52")
    strategy: Strategy = Field(description="Replenishment during the season")
    dc_holdback: float = Field(
        ge=0, le=1, description="Share of the stock kept back at the distribution centre, 0-1"
    )
    safety_multiplier: float | None = Field(
        default=None, gt=0, le=5, description="Overrides the strategy's safety-stock multiplier"
    )
    pack_size: int = Field(default=1, ge=1, le=1000, description="Quantities round up to packs")
    marketplaces: list[Literal["ebay", "etsy", "vinted"]] = Field(
        default_factory=list, max_length=3, description="Listings to update with the quantities"
    )
    preset: str = Field(default="", max_length=40, description="The preset it started from")

    @field_validator("season_end")
    @classmethod
    def _after_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("season_start")
        if start is not None and start >= end:
            raise ValueError("season_start must be before season_end")
        return end

    @field_validator("marketplaces")
    @classmethod
    def _no_repeats(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("marketplaces must not repeat")
        return names

    @property
    def multiplier(self) -> float:
        if self.safety_multiplier is not None:
            return self.safety_multiplier
        return SAFETY_MULTIPLIERS[self.strategy]

    def as_job_params(self) -> dict[str, Any]:
        """JSON-ready (what the plan job stores as its ``params``)."""
        data = self.model_dump(mode="json")
        data["multiplier"] = self.multiplier
        return data


PRESETS: dict[str, dict[str, Any]] = {
    # Short seasons, no replenishment, shipped in packs of six.
    "fast-fashion": {"horizon_weeks": 12, "strategy": "none", "dc_holdback": 0.0, "pack_size": 6},
    # Half a year, weekly replenishment from the DC, which keeps 45 % back.
    "standard": {"horizon_weeks": 26, "strategy": "weekly", "dc_holdback": 0.45, "pack_size": 4},
    # Low volume, high safety stock, single units, restocked every two weeks.
    "luxury": {
        "horizon_weeks": 26,
        "strategy": "bi-weekly",
        "dc_holdback": 0.2,
        "safety_multiplier": 1.6,
        "pack_size": 1,
    },
}


def next_monday(today: date | None = None) -> date:
    today = today or timezone.localdate()
    return today + timedelta(days=7 - today.weekday())


def plan_parameters(
    *, preset: str | None = None, overrides: Mapping[str, Any] | None = None
) -> PlanParameters:
    """Parameters from a preset (or none) with overrides; raises ``ValidationError``.

    Without dates, the season starts next Monday and lasts the horizon.
    """
    data: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise ValidationError.from_exception_data(
                "PlanParameters",
                [
                    {
                        "type": "literal_error",
                        "loc": ("preset",),
                        "input": preset,
                        "ctx": {"expected": ", ".join(repr(p) for p in PRESETS)},
                    }
                ],
            )
        data.update(PRESETS[preset], preset=preset)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if "season_start" not in data:
        data["season_start"] = next_monday()
    if "season_end" not in data and isinstance(data.get("horizon_weeks"), int):
        start = data["season_start"]
        if isinstance(start, str):
            try:
                start = date.fromisoformat(start)
            except ValueError:
                start = None
        if isinstance(start, date):  # an out-of-range horizon is reported on its own field
            weeks = min(max(data["horizon_weeks"], 1), 52)
            data["season_end"] = start + timedelta(weeks=weeks, days=-1)
    return PlanParameters.model_validate(data)


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """``[{"field", "message", "type"}]``: the shape every door reports."""
    return [
        {
            "field": ".".join(str(part) for part in err.get("loc", ())) or None,
            "message": err.get("msg", "invalid"),
            "type": err.get("type"),
        }
        for err in exc.errors()
    ]
