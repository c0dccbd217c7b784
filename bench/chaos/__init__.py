"""Chaos benchmark: the engine under kill -9 storms, a PostgreSQL restart and an ASGI
server restart, with real processes, on a throw-away database.

Everything runs against a **private** PostgreSQL 15 cluster (``bench/chaos/pg.py``: Debian's
binaries, a temp directory, a free port; never the shared server) that scenario 2 restarts,
and a private marketplace sandbox (``python -m marketplaces.sandbox`` on a free port,
``SANDBOX_URL`` pointed at it). Workers run as production runs them: ``manage.py
run_workers`` (the watchdog, ``orchestration/watchdog.py``) with 2 django-q2 workers.

1. ``kill_storm``: two tenants, eBay/Etsy/Vinted publish jobs (≥ 800) against the sandbox
   with fault rules on ≥ 20 % of requests (5xx, 429 + Retry-After, short timeouts, drops,
   lost responses); every 2-5 s a random process of the cluster gets SIGKILL (a worker,
   the pusher, the monitor, the sentinel, or the whole qcluster group). Checks: every job
   settles; the sandbox ledger has each create effect at most once per (shop, SKU); the
   longest gap between two step completions stays under the lease (60 s).
2. ``pg_restart``: a batch of no-op-ish jobs (``chaosfx``: 5 steps, each sleeping a few
   ms and leaving an effect file, ``bench/chaos/providers.py``); once the rate is steady,
   ``pg_ctl restart -m fast``. Steps/s in 5-s windows before and after; time until a
   5-s window is back to ≥ 90 % of the rate before (target ≤ 30 s); lost and duplicated = 0.
3. ``asgi_restart``: Chromium on the tenant's dashboard while a batch runs; the ASGI
   server is killed (SIGKILL) and started again on the same port mid-batch. Checks: the
   page reconnects its WebSocket and its bar reaches the batch's final status and
   progress without a reload; time to reconnect.

    .venv/bin/python -m bench.chaos                 # make chaos
    .venv/bin/python -m bench.chaos --scale 0.3     # smaller, for development
    .venv/bin/python -m bench.chaos --only pg_restart

Writes ``bench/results/chaos.json`` and the table between ``<!-- chaos:begin -->`` and
``<!-- chaos:end -->`` in ``docs/reliability.md``. Logs of the last run:
``bench/results/chaos.*.log.tmp``. Nothing here asserts: a missed target is reported.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos.asgi_restart import run_asgi_restart
from bench.chaos.cli import parse_args
from bench.chaos.constants import LOG, NAME
from bench.chaos.kill_storm import run_kill_storm
from bench.chaos.pg import PrivatePostgres
from bench.chaos.pg_restart import run_pg_restart
from bench.chaos.procs import SandboxServer
from bench.chaos.setup import (
    add_products,
    check_signalled,
    install_signal_handlers,
    make_env,
    provision,
    quiet,
    settle_leftovers,
)
from bench.chaos.summary import assemble, print_summary, write_docs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    install_signal_handlers()
    started = time.perf_counter()
    machine = harness.machine_info()
    print(f"[{NAME}] scenarios: {', '.join(args.scenarios)} (scale {args.scale:g})", flush=True)
    results: dict[str, Any] = {}
    setup: dict[str, Any] = {}
    database: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        pg = PrivatePostgres()
        stack.callback(pg.stop)
        pg.start()
        database = pg.describe()
        print(f"  private PostgreSQL {database['server_version']} on 127.0.0.1:{pg.port}")
        db = harness.BenchDatabase(pg.url, prefix="chaos")
        stack.enter_context(db)
        db.keep = args.keep_db
        sandbox = SandboxServer(Path(str(LOG).format("sandbox")))
        stack.callback(sandbox.stop)
        sandbox.start()
        effects = Path(tempfile.mkdtemp(prefix="chaos_effects_"))
        stack.callback(shutil.rmtree, effects, True)
        env = make_env(args, db.url, sandbox.url)
        setup = provision(env)
        harness.setup_django(env)
        quiet()
        import bench.chaos.providers  # noqa: F401  (chaosfx in this process too)

        setup.update(add_products(args))
        runners = {
            "kill_storm": lambda: run_kill_storm(args, env, sandbox),
            "pg_restart": lambda: run_pg_restart(args, env, pg, effects),
            "asgi_restart": lambda: run_asgi_restart(args, env, effects),
        }
        for name in args.scenarios:
            check_signalled()
            print(f"  -- {name}", flush=True)
            t = time.perf_counter()
            load = harness.loadavg()
            try:
                results[name] = runners[name]()
            except harness.BenchError as exc:
                print(f"  !! {name}: {exc}", file=sys.stderr)
                results[name] = {"error": str(exc)[-4000:], "pass": False}
            results[name]["duration_s"] = round(time.perf_counter() - t, 1)
            results[name]["loadavg_at_start"] = load
            settle_leftovers()
    result = assemble(args, machine, database, setup, results)
    path = harness.finish_result(NAME, result, started=started)
    if not args.no_docs:
        write_docs(result)
    print_summary(result, path)
    return result
