"""The server's ceiling for durable one-row updates, measured with ``pgbench``."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.harness.base import RESULTS_DIR
from bench.harness.database import connect


def find_pgbench() -> str | None:
    """pgbench of the server's major version if known: system PostgreSQL, then pgserver's."""
    import glob
    import shutil

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-not-found]

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"))
    found = shutil.which("pgbench")
    if found:
        candidates.append(found)
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def pgbench_single_row_updates(
    url: str, *, clients: int, seconds: int, rows: int = 1000, options: str = ""
) -> dict[str, Any]:
    """The server's ceiling for durable one-row-update transactions: ``pgbench`` running
    ``UPDATE bench_ceiling SET n = n + 1 WHERE id = random(1, rows)`` (one statement, one
    commit each) with ``clients`` connections for ``seconds``. ``options`` goes to
    ``PGOPTIONS`` (e.g. ``-c synchronous_commit=off`` for the non-durable figure)."""
    import environ

    binary = find_pgbench()
    if binary is None:
        return {"error": "pgbench not found"}
    with connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_ceiling")
        conn.execute("CREATE TABLE bench_ceiling (id int PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, %s) g", (rows,))
        conn.execute("VACUUM ANALYZE bench_ceiling")
    cfg = environ.Env.db_url_config(url)
    script = RESULTS_DIR / "pgbench_ceiling.sql.tmp"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"\\set id random(1, {rows})\nUPDATE bench_ceiling SET n = n + 1 WHERE id = :id;\n"
    )
    env = dict(os.environ, PGOPTIONS=options)
    argv = [binary, "-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds), "-f",
            str(script), "-U", cfg.get("USER") or "postgres"]  # fmt: skip
    if cfg.get("HOST"):
        argv += ["-h", str(cfg["HOST"])]
    if cfg.get("PORT"):
        argv += ["-p", str(cfg["PORT"])]
    if cfg.get("PASSWORD"):
        env["PGPASSWORD"] = str(cfg["PASSWORD"])
    argv.append(str(cfg["NAME"]))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 120)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-1000:], "binary": binary}
    tps = None
    latency = None
    for line in proc.stdout.splitlines():
        if line.startswith("tps =") and tps is None:
            tps = float(line.split()[2])
        if line.startswith("latency average ="):
            latency = float(line.split()[3])
    return {
        "tps": tps,
        "latency_ms": latency,
        "clients": clients,
        "seconds": seconds,
        "options": options or "server defaults",
        "binary": binary,
        "statement": "UPDATE bench_ceiling SET n = n + 1 WHERE id = random(1, rows)",
        "rows": rows,
    }
