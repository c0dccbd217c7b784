"""Runs one step's check/perform on a helper thread so the worker can enforce the step's
time limit, renew its lease and notice a cancel while the step is busy."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.db import close_old_connections, connections

from orchestration import conf
from orchestration.steps import Step, StepContext, StepTimeout
from tenants.db import use_schema


def _call(step: Step, ctx: StepContext) -> tuple[dict[str, Any], bool]:
    close_old_connections()
    # The helper thread has its own connection, and it stays in the tenant's schema from one
    # step to the next: a ``schema_context`` per step made django-tenants send its
    # ``SET search_path`` again at every step's first query (and clear the content-type
    # cache). A step of another tenant switches it.
    use_schema(ctx.schema_name)
    existing = step.check(ctx)
    if existing is not None:
        return dict(existing), True
    return dict(step.perform(ctx)), False


class _StepThread:
    """One helper thread and its two queues: work in, outcomes out.

    Two ``SimpleQueue`` hand-offs cost about a third of the CPU of a
    ``ThreadPoolExecutor`` round trip (its ``Future``, condition and locks), and this
    hand-off happens once per step. The thread is a daemon: a step abandoned past its
    limit must not keep the worker process from exiting.
    """

    def __init__(self) -> None:
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self.abandoned = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="step", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                item = self.work.get()
                if item is None:
                    return
                fn, args = item
                try:
                    outcome: tuple[bool, Any] = (True, fn(*args))
                except BaseException as exc:  # handed to the worker, which re-raises it
                    outcome = (False, exc)
                if self.abandoned.is_set():  # nobody will read it, nor reuse this thread
                    return
                self.outcomes.put(outcome)
        finally:
            connections.close_all()  # this thread's own connection


class StepExecutor:
    """One long-lived helper thread per worker (it keeps its DB connection).

    A step that overruns its limit is abandoned with its thread; the next step gets
    a fresh thread. Its effect, if it lands later, is found by the step's check on retry.
    """

    def __init__(self) -> None:
        self._thread: _StepThread | None = None
        self._lock = threading.Lock()

    def _current(self) -> _StepThread:
        with self._lock:
            if self._thread is None:
                self._thread = _StepThread()
            return self._thread

    def _abandon(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._thread.abandoned.set()
                self._thread.work.put(None)  # it ends after the step it is stuck in
            self._thread = None

    def run(
        self, step: Step, ctx: StepContext, *, on_tick: Callable[[], None]
    ) -> tuple[Mapping[str, Any], bool]:
        """Return (output, reused_existing_effect). Raises what the step raised, or StepTimeout."""
        helper = self._current()
        helper.work.put((_call, (step, ctx)))
        tick = conf.get("CANCEL_POLL_SECONDS")
        while True:
            remaining = ctx.remaining()
            try:
                ok, value = helper.outcomes.get(
                    timeout=min(tick, remaining) if remaining > 0 else 0
                )
            except queue.Empty:
                if ctx.remaining() <= 0:
                    self._abandon()
                    raise StepTimeout(
                        f"step {ctx.step_type!r} timed out after {ctx.timeout:g}s (its limit)",
                        detail={"step": ctx.step_type, "limit_seconds": ctx.timeout},
                    ) from None
                on_tick()
                continue
            if ok:
                return value
            raise value

    def close(self) -> None:
        """Close the helper thread's DB connection, then the thread."""
        with self._lock:
            helper, self._thread = self._thread, None
        if helper is not None:
            helper.work.put(None)
            # A step still running past its limit is left behind (it closes its own connection).
            with contextlib.suppress(Exception):
                helper.thread.join(timeout=5)
