"""Waiting for a count to be reached, with a progress line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from bench.harness.base import BenchError
from bench.harness.processes import Cluster


class Progress:
    """``label: done/total`` on one line (a terminal), or a line every few seconds (a log)."""

    def __init__(self, label: str, total: int, stream=None, every: float = 2.0):
        self.label, self.total = label, total
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every = every
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        text = f"  {self.label}: {done}/{self.total} ({now - self._started:5.1f}s){extra}"
        if self.tty:
            self.stream.write("\r" + text.ljust(70))
            self.stream.flush()
        elif now - self._last >= self.every or done >= self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def wait_for_count(
    poll: Callable[[], int],
    total: int,
    *,
    label: str,
    cluster: Cluster,
    timeout: float,
    interval: float = 0.2,
    finished: Callable[[int], bool] | None = None,
) -> int:
    """Poll ``poll()`` every ``interval`` s until it reaches ``total`` (or ``finished(done)``).

    ``timeout`` is a liveness bound (a stuck run), not a speed requirement.
    """
    progress = Progress(label, total)
    deadline = time.monotonic() + timeout
    done = 0
    try:
        while True:
            done = poll()
            progress.update(done)
            if finished(done) if finished else done >= total:
                return done
            if not cluster.running():
                raise BenchError(
                    f"qcluster exited early ({label}: {done}/{total}); log {cluster.log_path}:\n"
                    f"{cluster.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{label}: only {done}/{total} after {timeout:.0f}s; log {cluster.log_path}:\n"
                    f"{cluster.log_tail()}"
                )
            time.sleep(interval)
    finally:
        progress.close()
