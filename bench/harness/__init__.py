"""Shared machinery for benchmarks, one module per topic:

- ``base``: paths, ``BenchError``, SIGTERM as an exit;
- ``database``: the server, the throw-away database, Django set up against it;
- ``processes``: ``manage.py`` children, a real ``qcluster`` (``Cluster``), several as one;
- ``asgi``: a real uvicorn (``AsgiServer``); ``browser``: Chromium logged in to the admin;
- ``progress``: waiting for a count, with a progress line;
- ``stats``: percentiles, distributions, rates;
- ``sql``: statements by kind;
- ``usage``: CPU of process trees and database backends, WAL counters;
- ``pgbench``: the server's one-row-update ceiling;
- ``pressure``: CPU pressure (PSI): the share of time some task waited for a CPU;
- ``results``: machine and git facts, the JSON file, the summary's closing lines, the CLI.

Everything is also importable from ``bench.harness`` itself (``harness.Cluster``).
Nothing here imports Django at module level: a benchmark process first creates its
database, then points ``DATABASE_URL`` at it and only then sets Django up, so the
harness and every subprocess it starts talk to the same (fresh) database.
"""

from __future__ import annotations

from bench.harness.asgi import AsgiServer
from bench.harness.base import BASE_DIR, RESULTS_DIR, BenchError, install_sigterm_handler
from bench.harness.browser import CHROMIUM, CHROMIUM_ARGS, open_logged_in
from bench.harness.database import (
    BenchDatabase,
    announce_database,
    connect,
    describe_database,
    redact,
    server_url,
    setup_django,
    throwaway_database,
    vacuum_analyze,
    with_database,
)
from bench.harness.pgbench import find_pgbench, pgbench_single_row_updates
from bench.harness.pressure import cpu_pressure, cpu_pressure_between
from bench.harness.processes import (
    Cluster,
    ProcessGroup,
    cluster_env,
    create_tenant_with_staff,
    create_tenants,
    free_port,
    log_tail,
    manage,
    migrate,
)
from bench.harness.progress import Progress, wait_for_count
from bench.harness.results import (
    finish_result,
    git_state,
    loadavg,
    machine_info,
    machine_summary,
    measured_lines,
    now_iso,
    package_versions,
    run_cli,
    save_chart,
    write_result,
)
from bench.harness.sql import categorize
from bench.harness.stats import distribution, median_run, percentile, rate, seconds_between
from bench.harness.usage import WAL_COLUMNS, BackendCpu, tree_cpu_seconds, wal_stats

__all__ = [
    "BASE_DIR",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "RESULTS_DIR",
    "WAL_COLUMNS",
    "AsgiServer",
    "BackendCpu",
    "BenchDatabase",
    "BenchError",
    "Cluster",
    "ProcessGroup",
    "Progress",
    "announce_database",
    "categorize",
    "cluster_env",
    "connect",
    "cpu_pressure",
    "cpu_pressure_between",
    "create_tenant_with_staff",
    "create_tenants",
    "describe_database",
    "distribution",
    "find_pgbench",
    "finish_result",
    "free_port",
    "git_state",
    "install_sigterm_handler",
    "loadavg",
    "log_tail",
    "machine_info",
    "machine_summary",
    "manage",
    "measured_lines",
    "median_run",
    "migrate",
    "now_iso",
    "open_logged_in",
    "package_versions",
    "percentile",
    "pgbench_single_row_updates",
    "rate",
    "redact",
    "run_cli",
    "save_chart",
    "seconds_between",
    "server_url",
    "setup_django",
    "throwaway_database",
    "tree_cpu_seconds",
    "vacuum_analyze",
    "wait_for_count",
    "wal_stats",
    "with_database",
    "write_result",
]
