"""The step executor's hand-off: outcomes, exceptions, ticks, and a step abandoned at its limit.

Real threads, no database (a no-op step never opens a connection).
"""

from __future__ import annotations

import threading
import traceback

import pytest

from orchestration.engine.executor import StepExecutor
from orchestration.steps import StepContext, StepTimeout


def _ctx(timeout: float = 5.0) -> StepContext:
    return StepContext(schema_name="public", job_id=1, marketplace="m", action="a",
                       product_id=None, params={}, step_type="s", step_order=1, attempt=1,
                       timeout=timeout, outputs={})  # fmt: skip


class _Step:
    def __init__(self, perform, existing=None):
        self._perform, self._existing = perform, existing

    def check(self, ctx):
        return self._existing

    def perform(self, ctx):
        return self._perform(ctx)


@pytest.fixture
def executor():
    ex = StepExecutor()
    yield ex
    ex.close()


def test_outputs_and_reuse_come_back_in_order(executor):
    for n in range(50):
        assert executor.run(_Step(lambda ctx, n=n: {"n": n}), _ctx(), on_tick=lambda: None) == (
            {"n": n},
            False,
        )
    assert executor.run(_Step(None, existing={"id": 7}), _ctx(), on_tick=lambda: None) == (
        {"id": 7},
        True,
    )


def test_the_steps_exception_reaches_the_worker_with_its_frame(executor):
    def broken(ctx):
        raise KeyError("missing")

    with pytest.raises(KeyError) as raised:
        executor.run(_Step(broken), _ctx(), on_tick=lambda: None)
    assert "broken" in "".join(traceback.format_tb(raised.value.__traceback__))
    # and the same helper thread goes on serving
    assert executor.run(_Step(lambda ctx: {"ok": 1}), _ctx(), on_tick=lambda: None)[0] == {"ok": 1}


def test_the_worker_ticks_while_a_step_is_busy(executor, settings):
    settings.ORCHESTRATION = {**getattr(settings, "ORCHESTRATION", {}), "CANCEL_POLL_SECONDS": 0.02}
    ticks = []
    ticked_thrice = threading.Event()

    def on_tick():
        ticks.append(threading.current_thread())
        if len(ticks) >= 3:
            ticked_thrice.set()

    # The step waits for the worker's ticks: it ends only if they come while it runs.
    output = executor.run(
        _Step(lambda ctx: {"ticked": ticked_thrice.wait(10)}), _ctx(timeout=20), on_tick=on_tick
    )
    assert output == ({"ticked": True}, False)
    assert set(ticks) == {threading.current_thread()}  # on the worker's thread, not the step's


def test_a_step_past_its_limit_is_abandoned_and_the_next_step_gets_a_fresh_thread(executor):
    release = threading.Event()
    stuck_in = []

    def hangs(ctx):
        stuck_in.append(threading.current_thread())
        release.wait(10)
        return {"late": True}

    with pytest.raises(StepTimeout, match=r"timed out after 0\.2s"):
        executor.run(_Step(hangs), _ctx(timeout=0.2), on_tick=lambda: None)
    # (raised while the step still hangs: had the worker waited for it, it would have
    # returned the step's late output instead)

    # The next step runs at once on another thread, not behind the stuck one.
    served_by = []
    output = executor.run(
        _Step(lambda ctx: served_by.append(threading.current_thread()) or {"next": 1}),
        _ctx(),
        on_tick=lambda: None,
    )
    assert output == ({"next": 1}, False)
    assert served_by[0] is not stuck_in[0]

    # The stuck step's late outcome is never handed to anyone, and its thread ends.
    release.set()
    stuck_in[0].join(5)
    assert not stuck_in[0].is_alive()
    assert executor.run(_Step(lambda ctx: {"after": 2}), _ctx(), on_tick=lambda: None) == (
        {"after": 2},
        False,
    )


def test_close_ends_the_helper_thread():
    ex = StepExecutor()
    seen = []
    ex.run(_Step(lambda ctx: seen.append(threading.current_thread()) or {}), _ctx(),
           on_tick=lambda: None)  # fmt: skip
    ex.close()
    seen[0].join(5)
    assert not seen[0].is_alive()
