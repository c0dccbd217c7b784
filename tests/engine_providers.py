"""Step providers for engine tests, registered through the same registry as marketplaces.

Steps record their side effects in a ledger file and read injected faults from a
faults file (paths in the job's params), so the same providers work in-process
and in real qcluster worker processes (loaded via ORCHESTRATION_PROVIDER_MODULES).

faults file: {"<step_type>": {"mode": "retryable" | "permanent" | "lost_response" | "sleep"
              | "crash", "times": N, "seconds": S, "retry_after": S}}; each matching perform
              consumes one time ("retry_after": a retryable error's Retry-After).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestration.steps import (
    PermanentStepError,
    ResourceLimit,
    RetryableStepError,
    StepContext,
    register_provider,
    registered_marketplaces,
)

MARKETPLACE = "testmkt"
BRIDGE = "testbridge"
NOOP = "noopmkt"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ledger_entries(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_faults(path: str | Path, faults: Mapping[str, Mapping[str, Any]]) -> None:
    Path(path).write_text(json.dumps(faults))


def _consume_fault(path: str | None, step_type: str) -> dict | None:
    if not path:
        return None
    with _locked(Path(path)) as handle:
        text = handle.read()
        faults = json.loads(text) if text.strip() else {}
        fault = faults.get(step_type)
        if not fault or fault.get("times", 1) <= 0:
            return None
        fault["times"] = fault.get("times", 1) - 1
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(faults))
        return dict(fault)


class LedgerStep:
    """A side effect identified by (job, step): check finds it in the ledger."""

    def __init__(self, step_type: str, timeout: float = 30.0):
        self.step_type = step_type
        self.timeout = timeout

    def _key(self, ctx: StepContext) -> str:
        return f"{ctx.schema_name}:{ctx.job_id}:{self.step_type}"

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        ledger = ctx.params.get("ledger")
        if not ledger:
            return None
        for entry in ledger_entries(ledger):
            if entry["key"] == self._key(ctx):
                return entry["output"]
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        fault = _consume_fault(ctx.params.get("faults"), self.step_type)
        mode = fault["mode"] if fault else None
        if mode == "retryable":
            raise RetryableStepError(
                f"HTTP 503 from test API during {self.step_type}",
                retry_after=fault.get("retry_after") if fault else None,
            )
        if mode == "permanent":
            raise PermanentStepError(f"HTTP 400: invalid field in {self.step_type}")
        if mode == "sleep":
            end = time.monotonic() + float(fault.get("seconds", 1)) if fault else 0
            while time.monotonic() < end:
                ctx.raise_if_cancelled()
                time.sleep(0.02)
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        previous = {k: dict(v) for k, v in ctx.outputs.items()}
        output = {"remote_id": f"{self.step_type}-{ctx.job_id}", "saw": sorted(previous)}
        if ctx.params.get("ledger"):
            with _locked(Path(ctx.params["ledger"])) as handle:
                handle.seek(0, os.SEEK_END)
                handle.write(json.dumps({"key": self._key(ctx), "output": output, "pid": os.getpid(),
                                         "t": time.time(), "inputs": previous}) + "\n")  # fmt: skip
        if mode == "lost_response":
            raise RetryableStepError(f"connection reset after {self.step_type} was applied")
        return output


class NoopStep:
    """No I/O at all (benchmarks)."""

    def __init__(self, step_type: str):
        self.step_type = step_type
        self.timeout = 30.0

    def check(self, ctx: StepContext) -> None:
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        return {"ok": True}


class WaitStep(NoopStep):
    """Waits ``seconds`` and does nothing else: a marketplace call's latency without its CPU
    (benchmarks: what adding workers elsewhere buys when the CPU is not the limit)."""

    def __init__(self, step_type: str, seconds: float = 0.02):
        super().__init__(step_type)
        self.seconds = seconds

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        time.sleep(self.seconds)
        return {"ok": True}


class TestProvider:
    marketplace = MARKETPLACE
    resource = ResourceLimit(key="testmkt", concurrency=8)

    _actions = {
        "one": [LedgerStep("only")],
        "three": [LedgerStep(f"step{i}") for i in range(1, 4)],
        "five": [LedgerStep(f"step{i}") for i in range(1, 6)],
        "ten": [LedgerStep(f"step{i}") for i in range(1, 11)],
        "slow": [LedgerStep("prepare"), LedgerStep("slow", timeout=0.5), LedgerStep("finish")],
        "noop5": [NoopStep(f"noop{i}") for i in range(1, 6)],
        "wait5": [WaitStep(f"wait{i}") for i in range(1, 6)],
    }

    def actions(self):
        return list(self._actions)

    def steps(self, action: str):
        return self._actions[action]


class BridgeProvider(TestProvider):
    """Like a browser bridge: one job at a time per tenant."""

    marketplace = BRIDGE
    resource = ResourceLimit(key="testbridge", concurrency=1)


class NoopProvider(TestProvider):
    """Steps with no I/O and no external limit (benchmarks): a high concurrency, like an
    internal action would declare."""

    marketplace = NOOP
    resource = ResourceLimit(key="noop", concurrency=64)


if NOOP not in registered_marketplaces():
    register_provider(NoopProvider())
if MARKETPLACE not in registered_marketplaces():
    register_provider(TestProvider())
if BRIDGE not in registered_marketplaces():
    register_provider(BridgeProvider())
