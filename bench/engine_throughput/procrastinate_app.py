"""The procrastinate peer of the throughput benchmark: one no-op task, nothing else.

``BENCH_PROCRASTINATE_DSN`` (a libpq URL) names the benchmark's throw-away database; the
benchmark applies procrastinate's schema there, defers jobs with ``batch_defer`` and runs
``python -m procrastinate --app bench.engine_throughput.procrastinate_app.app worker`` processes (one job at
a time each, as many processes as django-q2 has workers). Not a benchmark module itself
(no ``main()``); imported by procrastinate's CLI and by ``bench.engine_throughput``.
"""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN", "postgresql:///postgres")
    )
)


@app.task(name="bench_noop")
def noop() -> None:
    """Does nothing, so only procrastinate's own cost is measured."""
    return None
