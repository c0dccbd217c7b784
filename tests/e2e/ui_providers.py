"""A provider for the UI browser tests: one resource with room for one job, and a last
step that takes a while and does not look for cancel requests (so a cancel arrives too late).

Loaded by the test process and the workers (ORCHESTRATION_PROVIDER_MODULES).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestration.steps import (
    ResourceLimit,
    RetryableStepError,
    StepContext,
    register_provider,
    registered_marketplaces,
)

MARKETPLACE = "uitest"


class Step:
    timeout = 30.0

    def __init__(self, step_type: str):
        self.step_type = step_type

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        params = ctx.params or {}
        if self.step_type in params.get("fail_steps", ()):
            raise RetryableStepError(f"HTTP 503 from uitest during {self.step_type}")
        if self.step_type == "finish":
            time.sleep(float(params.get("seconds", 0)))  # never polls for a cancel
        return {"remote_id": f"{self.step_type}-{ctx.job_id}"}


class UiProvider:
    marketplace = MARKETPLACE
    resource = ResourceLimit(key=MARKETPLACE, concurrency=1)

    def actions(self):
        return ["publish"]

    def steps(self, action: str):
        return [Step("prepare"), Step("upload"), Step("finish")]


if MARKETPLACE not in registered_marketplaces():
    register_provider(UiProvider())
