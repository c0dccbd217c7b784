"""Step providers for the chaos benchmark (loaded through ``ORCHESTRATION_PROVIDER_MODULES``).

``chaosfx``: steps whose only side effect is a file per (tenant, job, step) in the
directory named by the job's ``params["effects"]``. ``check`` finds the file (the effect
exists: the engine records it instead of repeating it); ``perform`` appends one line to it
(``O_APPEND``: one write, atomic) and, if ``params["step_ms"]``, sleeps that long first (a
"no-op-ish" step of known duration, so a rate is measurable on a busy machine). A file with
more than one line is an effect applied twice: a job that ran twice at once, or a
completed step that was run again. Nothing here touches the database, so the effect
survives a PostgreSQL restart even when the step's own commit does not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestration.steps import (
    ResourceLimit,
    StepContext,
    register_provider,
    registered_marketplaces,
)

MARKETPLACE = "chaosfx"


def effect_path(directory: str, schema: str, job_id: int, step_type: str) -> Path:
    return Path(directory) / f"{schema}.{job_id}.{step_type}"


class EffectStep:
    def __init__(self, step_type: str):
        self.step_type = step_type
        self.timeout = 30.0

    def _path(self, ctx: StepContext) -> Path | None:
        directory = ctx.params.get("effects")
        if not directory:
            return None
        return effect_path(directory, ctx.schema_name, ctx.job_id, self.step_type)

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        path = self._path(ctx)
        if path is not None and path.exists():
            return {"effect": path.name, "reused": True}
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        delay = float(ctx.params.get("step_ms") or 0) / 1000
        if delay:
            time.sleep(delay)
        path = self._path(ctx)
        if path is not None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, f"{os.getpid()} {time.time():.6f} {ctx.attempt}\n".encode())
            finally:
                os.close(fd)
        return {"effect": path.name if path else None}


class ChaosProvider:
    marketplace = MARKETPLACE
    resource = ResourceLimit(key="chaosfx", concurrency=64)
    _actions = {
        "three": [EffectStep(f"fx{i}") for i in range(1, 4)],
        "five": [EffectStep(f"fx{i}") for i in range(1, 6)],
    }

    def actions(self):
        return list(self._actions)

    def steps(self, action: str):
        return self._actions[action]


if MARKETPLACE not in registered_marketplaces():
    register_provider(ChaosProvider())
