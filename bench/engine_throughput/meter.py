"""What a run used, measured while it runs: database counters, CPU of workers and backends, WAL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench import harness
from bench.engine_throughput.constants import STATS_COLUMNS


def db_stats() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        # PostgreSQL 15+: make this session's own pending counters visible (older: they lag)
        with contextlib.suppress(Exception):
            cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            f"SELECT {', '.join(STATS_COLUMNS)} FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    return dict(zip(STATS_COLUMNS, (int(v) for v in row), strict=True))


def stats_delta(before: dict[str, int], after: dict[str, int], *, polls: int) -> dict[str, int]:
    delta = {k: after[k] - before[k] for k in STATS_COLUMNS}
    delta["xact_commit"] -= polls + 2  # the harness's own poll and stats statements
    return delta


class Poller:
    """A separate plain connection that polls one count (one statement per poll)."""

    def __init__(self, url: str, sql: str, params: tuple):
        self.conn = harness.connect(url)
        self.sql, self.params = sql, params
        self.polls = 0
        self.last: tuple = ()

    def __call__(self) -> int:
        self.polls += 1
        self.last = self.conn.execute(self.sql, self.params).fetchone() or ()
        return int(self.last[-1] or 0)

    def close(self) -> None:
        self.conn.close()  # its session's counters are flushed when it ends


class Usage:
    def __init__(self, worker_cpu_s, backend_cpu_s, wal, commits, seconds, units):
        self.worker_cpu_s, self.backend_cpu_s = worker_cpu_s, backend_cpu_s
        self.wal, self.commits, self.seconds = wal, commits, seconds
        self.units = units  # results counted inside the measured window

    def per_unit(self, count: int, unit: str) -> dict[str, Any]:
        count = self.units or count

        def per(value):
            return None if value is None else round(value / count, 2)

        return {
            f"usage_per_{unit}": {
                "worker_cpu_us": per(self.worker_cpu_s * 1e6),
                "backend_cpu_us": per(
                    None if self.backend_cpu_s is None else self.backend_cpu_s * 1e6
                ),
                "commits": per(self.commits),
                "wal_syncs_server_wide": per(self.wal.get("wal_sync")),
                "wal_records_server_wide": per(self.wal.get("wal_records")),
                "wal_bytes_server_wide": per(self.wal.get("wal_bytes")),
            },
            "usage_window": {
                "basis": (
                    "from the first poll that saw a result to the last poll (start-up "
                    f"left out), per {unit} completed in that window"
                ),
                f"{unit}s": self.units,
                "seconds": round(self.seconds, 3),
                "worker_cpu_s": round(self.worker_cpu_s, 3),
                "backend_cpu_s": self.backend_cpu_s,
                "commits": self.commits,
                **self.wal,
            },
        }


class Meter:
    """Where a run's time goes, in its steady part: CPU of the worker processes (process
    trees, psutil), CPU of this database's backends (sampled at every poll), commits of this
    database (``pg_stat_database``) and WAL records/flushes (``pg_stat_wal``), from the
    first poll that sees a result to the last poll. WAL counters are server-wide: other
    databases on a shared server add to them (recorded as measured, named so).

    ``units_per_result`` converts the polled count (jobs) into the unit reported (steps).
    """

    def __init__(self, url: str, dbname: str, units_per_result: int = 1):
        self.conn = harness.connect(url)
        self.backends = harness.BackendCpu(url, dbname)
        self.dbname = dbname
        self.units_per_result = units_per_result
        self.base: dict[str, Any] | None = None
        self.done = 0
        self.polls = 0

    def _commits(self) -> int:
        with contextlib.suppress(Exception):
            self.conn.execute("SELECT pg_stat_force_next_flush()")
        return int(
            self.conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.dbname,)
            ).fetchone()[0]
        )

    def _snapshot(self, group) -> dict[str, Any]:
        self.backends.sample()
        worker = 0.0
        with contextlib.suppress(Exception):
            worker = harness.tree_cpu_seconds(_pids(group))
        return {
            "t": time.perf_counter(),
            "worker": worker,
            "backend": self.backends.total(),
            "wal": harness.wal_stats(self.conn),
            "commits": self._commits(),
            "done": self.done,
            "polls": self.polls,
        }

    def wrap(self, poll, group):
        def polled() -> int:
            self.polls += 1
            self.done = poll()
            if self.base is None and self.done > 0:
                self.base = self._snapshot(group)
            elif self.base is not None:
                self.backends.sample()
            return self.done

        return polled

    def finish(self, group) -> Usage:
        try:
            if self.base is None:
                return Usage(0.0, None, {}, 0, 0.0, 0)
            end = self._snapshot(group)
            base = self.base
            backend = (
                round(end["backend"] - base["backend"], 3)
                if end["backend"] is not None and base["backend"] is not None
                else None
            )
            polls = end["polls"] - base["polls"]
            # each poll: one poller statement + one backend sample (autocommit each);
            # each snapshot: about four of its own
            commits = end["commits"] - base["commits"] - 2 * polls - 4
            wal = {k: end["wal"][k] - base["wal"][k] for k in harness.WAL_COLUMNS}
            return Usage(
                end["worker"] - base["worker"],
                backend,
                wal,
                commits,
                end["t"] - base["t"],
                (end["done"] - base["done"]) * self.units_per_result,
            )
        finally:
            self.backends.close()
            self.conn.close()


def _pids(group) -> list[int]:
    if isinstance(group, harness.ProcessGroup):
        return group.pids()
    return [group.proc.pid] if group.proc is not None else []


def drain(
    workers: harness.Cluster | harness.ProcessGroup,
    poller: Poller,
    meter: Meter,
    total: int,
    *,
    label: str,
    timeout: float,
    finished: Callable[[int], bool] | None = None,
) -> Usage:
    """Start ``workers`` and wait until ``poller`` counts ``total`` (or ``finished``), metering
    them; then stop them. Returns what they used (``Meter.finish``)."""
    workers.start()
    try:
        harness.wait_for_count(
            meter.wrap(poller, workers),
            total,
            label=label,
            cluster=workers,
            timeout=timeout,
            finished=finished,
        )
    finally:
        usage = meter.finish(workers)
        workers.stop()
        poller.close()
    return usage
