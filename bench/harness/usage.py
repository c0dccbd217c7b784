"""Resources a run used: CPU of process trees and of database backends, WAL counters."""

from __future__ import annotations

import contextlib

from bench.harness.database import connect


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their live descendants (psutil)."""
    import psutil

    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
    return total


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database (same machine only).

    ``sample()`` (call it while the workers run, e.g. at every poll) records each backend's
    CPU so far; a backend's figure is its last sample, so backends that end keep what they
    had used when last seen. ``None`` when the server is not local or /proc is not readable.
    """

    def __init__(self, url: str, dbname: str):
        self.conn = connect(url)
        self.dbname = dbname
        self.own_pid = self.conn.info.backend_pid
        self.cpu: dict[int, float] = {}
        self.available = True

    def sample(self) -> None:
        import psutil

        if not self.available:
            return
        pids = [
            row[0]
            for row in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                (self.dbname, self.own_pid),
            )
        ]
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            except psutil.Error:
                self.available = False
                return
            self.cpu[pid] = times.user + times.system

    def total(self) -> float | None:
        return round(sum(self.cpu.values()), 3) if self.available and self.cpu else None

    def close(self) -> None:
        self.conn.close()


WAL_COLUMNS = ("wal_records", "wal_bytes", "wal_write", "wal_sync")


def wal_stats(conn) -> dict[str, int]:
    """``pg_stat_wal`` counters (PostgreSQL 14+; server-wide: other databases count too)."""
    with contextlib.suppress(Exception):
        conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(f"SELECT {', '.join(WAL_COLUMNS)} FROM pg_stat_wal").fetchone()
    return dict(zip(WAL_COLUMNS, (int(v) for v in row), strict=True))
