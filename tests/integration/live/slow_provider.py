"""A step provider whose steps take a little time, so a browser can watch progress move.

Loaded by the live tests' server and workers (ORCHESTRATION_PROVIDER_MODULES).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestration.steps import (
    ResourceLimit,
    StepContext,
    register_provider,
    registered_marketplaces,
)

MARKETPLACE = "liveslow"
STEP_SECONDS = 0.15


class SleepyStep:
    timeout = 10.0

    def __init__(self, step_type: str):
        self.step_type = step_type

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        time.sleep(STEP_SECONDS)
        return {"remote_id": f"{self.step_type}-{ctx.job_id}"}


class SlowProvider:
    marketplace = MARKETPLACE
    resource = ResourceLimit(key=MARKETPLACE, concurrency=2)

    def actions(self):
        return ["publish"]

    def steps(self, action: str):
        return [SleepyStep("prepare"), SleepyStep("publish")]


if MARKETPLACE not in registered_marketplaces():
    register_provider(SlowProvider())
