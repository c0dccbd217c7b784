"""Runs one step's check/perform on a helper thread so the worker can enforce the step's
time limit, renew its lease and notice a cancel while the step is busy."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.db import close_old_connections, connections
from django_tenants.utils import schema_context

from orchestration import conf
from orchestration.steps import Step, StepContext, StepTimeout


def _call(step: Step, ctx: StepContext, abandoned: threading.Event) -> tuple[dict[str, Any], bool]:
    close_old_connections()
    try:
        with schema_context(ctx.schema_name):  # the helper thread has its own connection
            existing = step.check(ctx)
            if existing is not None:
                return dict(existing), True
            return dict(step.perform(ctx)), False
    finally:
        if abandoned.is_set():  # nobody will reuse this thread: release its connection
            connections.close_all()


class StepExecutor:
    """One long-lived helper thread per worker (it keeps its DB connection).

    A step that overruns its limit is abandoned with its thread; the next step gets
    a fresh thread. Its effect, if it lands later, is found by the step's check on retry.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._abandoned = threading.Event()
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="step")
                self._abandoned = threading.Event()
            return self._pool

    def _abandon(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._abandoned.set()
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def run(
        self, step: Step, ctx: StepContext, *, on_tick: Callable[[], None]
    ) -> tuple[Mapping[str, Any], bool]:
        """Return (output, reused_existing_effect). Raises what the step raised, or StepTimeout."""
        pool = self._executor()
        future: Future = pool.submit(_call, step, ctx, self._abandoned)
        tick = conf.get("CANCEL_POLL_SECONDS")
        while True:
            remaining = ctx.remaining()
            try:
                return future.result(timeout=min(tick, remaining) if remaining > 0 else 0)
            except FutureTimeout:
                if ctx.remaining() <= 0:
                    self._abandon()
                    raise StepTimeout(
                        f"step {ctx.step_type!r} timed out after {ctx.timeout:g}s (its limit)",
                        detail={"step": ctx.step_type, "limit_seconds": ctx.timeout},
                    ) from None
                on_tick()

    def close(self) -> None:
        """Close the helper thread's DB connection, then the thread."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            # A step still running past its limit is left behind (it closes its own connection).
            with contextlib.suppress(FutureTimeout):
                pool.submit(connections.close_all).result(timeout=5)
            pool.shutdown(wait=False)
