"""A progress bar (rich) for commands that wait for work done elsewhere (a batch, an
operation): it re-reads the row until it is finished."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

POLL_SECONDS = 0.5


class Trackable(Protocol):
    @property
    def finished(self) -> bool: ...


def _numbers(row: Any) -> tuple[int, int, str]:
    if hasattr(row, "done_jobs"):  # a batch
        return row.done_jobs, row.total_jobs, row.status
    return row.processed, row.total, row.status


def wait_with_bar[T](
    read: Callable[[], T],
    *,
    show: bool = True,
    stream: Any = None,
    finished: Callable[[T], bool] | None = None,
    timeout: float | None = None,
) -> T:
    """Re-read with ``read()`` every ``POLL_SECONDS`` until ``finished(row)``; draw a bar on
    ``stream`` (stderr: stdout stays for the result / --json) unless ``show`` is False."""
    done = finished or (lambda row: bool(row.finished))  # type: ignore[attr-defined]
    start = time.monotonic()
    console = Console(file=getattr(stream, "_out", stream), stderr=stream is None)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=not show, transient=False,
    ) as progress:  # fmt: skip
        row = read()
        n, total, status = _numbers(row)
        task = progress.add_task(status, total=total or None, completed=n)
        while not done(row):
            if timeout is not None and time.monotonic() - start > timeout:
                break
            time.sleep(POLL_SECONDS)
            row = read()
            n, total, status = _numbers(row)
            progress.update(task, completed=n, total=total or None, description=status)
        progress.update(task, completed=n, total=total or None, description=status)
    return row
