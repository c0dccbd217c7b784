"""Step providers for the invariant tests (issue 10), registered through the same registry.

- ``sealmkt``: one step that records which schema it runs in and what it sees there
  (the products' SKUs), and writes one product row: tenant sealing inside a worker.
  Works in real qcluster workers (``ORCHESTRATION_PROVIDER_MODULES``).
- ``stubbornmkt``: a first step that blocks until the test lets it go and never calls
  ``ctx.raise_if_cancelled()``, then two ledger steps: cancellation at a step boundary.
  In-process only (it waits on a ``threading.Event``).

Registered at import only when listed in ``ORCHESTRATION_PROVIDER_MODULES`` (worker
processes); the test process registers them with ``register()`` for the tests that use
them and ``unregister()``s them after, so other tests see the usual resource policies.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestration.steps import (
    ResourceLimit,
    StepContext,
    register_provider,
    registered_marketplaces,
    unregister_provider,
)
from tests.engine_providers import LedgerStep, _locked

SEAL = "sealmkt"
STUBBORN = "stubbornmkt"


class SealStep:
    """Records ``connection.schema_name`` and the SKUs it sees; writes a product row."""

    step_type = "peek"
    timeout = 30.0

    def check(self, ctx: StepContext) -> None:
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        from django.db import connection

        from marketplaces.models import Product

        seen = sorted(Product.objects.values_list("sku", flat=True))
        written = f"written-by-{ctx.params['tenant']}-{ctx.job_id}"
        Product.objects.create(sku=written, title=written, price="1.00")
        record = {
            "schema": connection.schema_name,
            "context_schema": ctx.schema_name,
            "tenant": ctx.params["tenant"],
            "seen": seen,
            "written": written,
            "pid": os.getpid(),
        }
        if ctx.params.get("record"):
            with _locked(Path(ctx.params["record"])) as handle:
                handle.seek(0, os.SEEK_END)
                handle.write(json.dumps(record) + "\n")
        return record


class SealProvider:
    marketplace = SEAL
    resource = ResourceLimit(key="sealmkt", concurrency=4)

    def actions(self):
        return ["peek"]

    def steps(self, action: str):
        return [SealStep(), _SecondPeek()]


class _SecondPeek(SealStep):
    """A second step: the schema must still be the job's after a step boundary."""

    step_type = "peek_again"

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        from django.db import connection

        from marketplaces.models import Product

        return {
            "schema": connection.schema_name,
            "seen": sorted(Product.objects.values_list("sku", flat=True)),
        }


# --- a step that ignores cancellation -------------------------------------------------

started = threading.Event()  # the blocking step is running
proceed = threading.Event()  # the test lets it finish


class BlockingStep(LedgerStep):
    """Waits for ``proceed`` (at most ``timeout``) without ever looking at the cancel flag."""

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        started.set()
        if not proceed.wait(self.timeout - 1):
            raise AssertionError("the test never let the blocking step go")
        time.sleep(0.05)  # a few cancel polls see the flag while the step goes on
        return super().perform(ctx)


class StubbornProvider:
    marketplace = STUBBORN
    resource = ResourceLimit(key="stubbornmkt", concurrency=4)

    def actions(self):
        return ["three"]

    def steps(self, action: str):
        return [
            BlockingStep("ignores_cancel", timeout=20),
            LedgerStep("step2"),
            LedgerStep("step3"),
        ]


def register() -> None:
    if SEAL not in registered_marketplaces():
        register_provider(SealProvider())
    if STUBBORN not in registered_marketplaces():
        register_provider(StubbornProvider())


def unregister() -> None:
    unregister_provider(SEAL)
    unregister_provider(STUBBORN)


def _loaded_as_a_plugin() -> bool:
    from django.conf import settings

    return __name__ in getattr(settings, "ORCHESTRATION_PROVIDER_MODULES", [])


if _loaded_as_a_plugin():
    register()
