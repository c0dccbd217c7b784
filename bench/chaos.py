"""Chaos benchmark: the engine under kill -9 storms, a PostgreSQL restart and an ASGI
server restart, with real processes, on a throw-away database.

Everything runs against a **private** PostgreSQL 15 cluster (``bench/chaos_pg.py``: Debian's
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
   ms and leaving an effect file, ``bench/chaos_providers.py``); once the rate is steady,
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

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos_pg import PrivatePostgres
from bench.chaos_procs import SandboxServer, Workers

NAME = "chaos"
TENANTS = ("acme", "globex")  # seed_demo's tenants (staff / demo-pass-123)
STAFF_USER, STAFF_PASSWORD = "staff", "demo-pass-123"
LEASE_SECONDS = 60.0
PG_RECOVERY_TARGET_S = 30.0
PG_RATE_FRACTION = 0.9
WINDOW_S = 5.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DOCS = harness.BASE_DIR / "docs" / "reliability.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"
SCENARIOS = ("kill_storm", "pg_restart", "asgi_restart")
LOG = harness.RESULTS_DIR / "chaos.{}.log.tmp"

# Create effects: at most one per (marketplace, shop, SKU) whatever happens.
CREATE_OPS = ("create_inventory_item", "create_offer", "create_draft_listing", "create_item")
# Effects that should not repeat either for a publish (reported; a repeat is a finding).
ONCE_OPS = ("publish_offer", "activate_listing", "revise_listing")
# What a killed process is: weights of the storm's dice.
KILL_WEIGHTS = {"worker": 40, "pusher": 12, "monitor": 12, "sentinel": 12, "group": 24}


_SIGNALLED: list[int] = []


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT end the run through ``finally`` blocks (stop every process, drop
    the database, stop PostgreSQL). The exception can be swallowed by a library it
    interrupts, so the signal is also remembered and every wait loop checks it."""

    def _stop(signum, frame):
        first = not _SIGNALLED
        _SIGNALLED.append(signum)
        if first:  # a second signal does not interrupt the clean-up the first one started
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def check_signalled() -> None:
    if _SIGNALLED:
        raise SystemExit(128 + _SIGNALLED[0])


def fault_rules(timeout_s: float) -> list[dict[str, Any]]:
    """≈ 22 % of marketplace requests fail one way or another (first firing rule decides).
    The first rule fires for every request: its ``fired`` count is the number of requests."""
    rules: list[dict[str, Any]] = [{"kind": "latency", "latency_ms": 0}]
    rules += [
        {"kind": "error", "status": 503, "probability": 0.07, "message": "chaos: unavailable"},
        {"kind": "error", "status": 502, "probability": 0.02, "message": "chaos: bad gateway"},
        {
            "kind": "error",
            "status": 429,
            "retry_after": 1,
            "probability": 0.05,
            "message": "chaos: rate limited",
        },
        {"kind": "drop", "probability": 0.02},
        {"kind": "lost_response", "lost_as": "drop", "probability": 0.025},
        {"kind": "lost_response", "lost_as": "error", "probability": 0.02},
    ]
    # Vinted's bridge never answers a held command (the step waits its whole budget):
    # timeouts only on the HTTP marketplaces, held briefly (then 504) to stay bounded.
    for market in ("ebay", "etsy"):
        rules += [
            {"kind": "timeout", "marketplace": market, "seconds": timeout_s, "probability": 0.02},
            {
                "kind": "lost_response",
                "marketplace": market,
                "lost_as": "timeout",
                "seconds": timeout_s,
                "probability": 0.01,
            },
        ]
    return rules


def fault_share(rules: list[dict[str, Any]], marketplace: str) -> float:
    ok = 1.0
    for rule in rules:
        if rule["kind"] != "latency" and rule.get("marketplace") in (None, marketplace):
            ok *= 1 - rule.get("probability", 1.0)
    return 1 - ok


# --- arguments ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every job count (dev: 0.3)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=20261202)
    # 1. kill storm
    p.add_argument("--ebay", type=int, default=200, help="eBay publish jobs per tenant")
    p.add_argument("--etsy", type=int, default=180, help="Etsy publish jobs per tenant")
    p.add_argument("--vinted", type=int, default=20, help="Vinted publish jobs per tenant")
    p.add_argument("--max-retries", type=int, default=20)
    p.add_argument("--retry-base", type=float, default=0.5, help="ORCHESTRATION_RETRY_BASE_SECONDS")
    p.add_argument("--retry-max", type=float, default=4.0, help="ORCHESTRATION_RETRY_MAX_SECONDS")
    p.add_argument("--etsy-rate", type=int, default=600, help="Etsy starts/min per tenant")
    p.add_argument("--fault-timeout", type=float, default=0.3, help="seconds a 'timeout' holds")
    p.add_argument("--kill-min", type=float, default=2.0)
    p.add_argument("--kill-max", type=float, default=5.0)
    p.add_argument("--storm-seconds", type=float, default=90, help="kills stop after this")
    p.add_argument("--storm-timeout", type=float, default=300, help="liveness bound (s)")
    # 2. PostgreSQL restart
    p.add_argument("--pg-jobs", type=int, default=2000)
    p.add_argument(
        "--pg-outage",
        type=float,
        default=5.0,
        help="after the restart: stop PostgreSQL this long, then start it (0: skip)",
    )
    p.add_argument("--pg-step-ms", type=float, default=6.0)
    p.add_argument("--pg-timeout", type=float, default=240, help="liveness bound (s)")
    # 3. ASGI restart
    p.add_argument("--asgi-jobs", type=int, default=150)
    p.add_argument("--asgi-step-ms", type=float, default=60.0)
    p.add_argument("--asgi-down", choices=("kill", "term"), default="kill")
    p.add_argument("--asgi-timeout", type=float, default=150, help="liveness bound (s)")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/reliability.md")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    for key in ("ebay", "etsy", "vinted", "pg_jobs", "asgi_jobs"):
        setattr(args, key, max(1, round(getattr(args, key) * args.scale)))
    return args


def command_line(args: argparse.Namespace) -> str:
    extra = f" --scale {args.scale:g}" if args.scale != 1 else ""
    if args.scenarios != list(SCENARIOS):
        extra += f" --only {','.join(args.scenarios)}"
    return f".venv/bin/python -m bench.chaos{extra}"


# --- main -------------------------------------------------------------------------------------


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
        import bench.chaos_providers  # noqa: F401  (chaosfx in this process too)

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
    result["duration_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_at_end"] = harness.loadavg()
    path = harness.write_result(NAME, result)
    if not args.no_docs:
        write_docs(result)
    print_summary(result, path)
    return result


def make_env(args: argparse.Namespace, database_url: str, sandbox_url: str) -> dict[str, str]:
    env = harness.cluster_env(database_url, workers=args.workers)
    for key in ("REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    env.update(
        SANDBOX_URL=sandbox_url,
        ORCHESTRATION_PROVIDER_MODULES="tests.engine_providers,bench.chaos_providers",
        ORCHESTRATION_RETRY_BASE_SECONDS=str(args.retry_base),
        ORCHESTRATION_RETRY_MAX_SECONDS=str(args.retry_max),
    )
    return env


def quiet() -> None:
    import logging
    import warnings

    for name in ("httpx", "orchestration", "django_tenants", "channels_postgres"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="No directory at")


def provision(env: dict[str, str]) -> dict[str, Any]:
    print("  migrate_schemas + seed_demo ...", flush=True)
    _, migrate_s = harness.manage("migrate_schemas", "--noinput", env=env)
    _, seed_s = harness.manage("seed_demo", env=env)
    print(f"  migrated in {migrate_s:.1f}s, demo tenants in {seed_s:.1f}s", flush=True)
    return {"migrate_schemas_s": round(migrate_s, 1), "seed_demo_s": round(seed_s, 1)}


def add_products(args: argparse.Namespace) -> dict[str, Any]:
    """Each demo tenant gets products up to the largest per-marketplace job count, cloned
    from its 32 fixtures under new SKUs (titles kept: valid on every marketplace)."""
    from django_tenants.utils import schema_context

    from marketplaces.models import Product

    wanted = max(args.ebay, args.etsy, args.vinted)
    added = {}
    for schema in TENANTS:
        with schema_context(schema):
            base = list(Product.objects.order_by("sku"))
            have = len(base)
            new = []
            for i in range(max(0, wanted - have)):
                src = base[i % len(base)]
                new.append(
                    Product(
                        sku=f"{src.sku}-X{i:04d}",
                        title=src.title,
                        description=src.description,
                        price=src.price,
                        currency=src.currency,
                        quantity=src.quantity,
                        brand=src.brand,
                        size=src.size,
                        condition=src.condition,
                        category=src.category,
                        images=list(src.images),
                    )
                )
            Product.objects.bulk_create(new)
            added[schema] = {"fixtures": have, "added": len(new)}
    return {"products": added}


def settle_leftovers() -> None:
    """Jobs a failed scenario left unsettled are cancelled, so the next one starts clean."""
    from django.db import connections
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceJob
    from orchestration.services import jobs_cancel
    from orchestration.states import JOB_TERMINAL

    connections.close_all()
    with contextlib.suppress(Exception):
        for schema in TENANTS:
            with schema_context(schema):
                open_jobs = MarketplaceJob.objects.exclude(status__in=list(JOB_TERMINAL))
                if open_jobs.exists():
                    jobs_cancel(queryset=open_jobs)


# --- shared measurements -----------------------------------------------------------------------


class JobCounter:
    """Settled / total jobs of some batches, polled on a plain connection of its own
    (reconnects: it must live through a PostgreSQL restart)."""

    def __init__(self, url: str, batches: dict[str, list[int]]):
        from orchestration.models import MarketplaceJob, MarketplaceTask
        from orchestration.states import JOB_TERMINAL

        self.url = url
        self.conn = None
        terminal = ", ".join(f"'{s}'" for s in sorted(JOB_TERMINAL))
        job_table, task_table = MarketplaceJob._meta.db_table, MarketplaceTask._meta.db_table
        parts = []
        for schema, ids in batches.items():
            if not ids:
                continue
            id_list = ", ".join(str(i) for i in ids)
            parts.append(
                f"SELECT count(*) FILTER (WHERE j.status IN ({terminal})) AS settled, "
                f'count(*) AS total, (SELECT count(*) FROM "{schema}"."{task_table}" t '
                f"WHERE t.status = 'completed' AND t.job_id IN (SELECT id FROM "
                f'"{schema}"."{job_table}" WHERE batch_id IN ({id_list}))) AS steps '
                f'FROM "{schema}"."{job_table}" j WHERE j.batch_id IN ({id_list})'
            )
        self.sql = (
            "SELECT sum(settled), sum(total), sum(steps) FROM (" + " UNION ALL ".join(parts) + ") s"
        )
        self.last = (0, 0, 0)
        self.errors = 0

    def poll(self) -> tuple[int, int, int]:
        try:
            if self.conn is None:
                self.conn = harness.connect(self.url)
            row = self.conn.execute(self.sql).fetchone()
            self.last = tuple(int(v or 0) for v in row)  # type: ignore[assignment]
        except Exception:
            self.errors += 1
            with contextlib.suppress(Exception):
                if self.conn is not None:
                    self.conn.close()
            self.conn = None
        return self.last

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()


def job_report(batches: dict[str, list[int]]) -> dict[str, Any]:
    """Statuses, runs, duplicates and completion timestamps of the batches' jobs."""
    from django.db.models import Count, Q
    from django_tenants.utils import schema_context

    from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
    from orchestration.states import JOB_TERMINAL

    statuses: Counter = Counter()
    errors: Counter = Counter()
    run_kinds: Counter = Counter()
    completions: list[float] = []
    job_done: list[float] = []
    runs_total = twice_completed = tasks_reused = steps_completed = unsettled_tasks = 0
    runs_per_job: Counter = Counter()
    unsettled: list[dict[str, Any]] = []
    for schema, ids in batches.items():
        with schema_context(schema):
            jobs = MarketplaceJob.objects.filter(batch_id__in=ids)
            for row in jobs.values("status").annotate(n=Count("id")):
                statuses[row["status"]] += row["n"]
            for message in jobs.filter(status="failed").values_list("error_message", flat=True):
                errors[_shorten(message)] += 1
            for job in jobs.exclude(status__in=list(JOB_TERMINAL)).values("id", "status")[:10]:
                unsettled.append({"tenant": schema, **job})
            tasks = MarketplaceTask.objects.filter(job__batch_id__in=ids, status="completed")
            steps_completed += tasks.count()
            tasks_reused += tasks.filter(reused_existing=True).count()
            completions += [
                t.timestamp() for t in tasks.values_list("completed_at", flat=True) if t
            ]
            runs = JobRun.objects.filter(job__batch_id__in=ids)
            runs_total += runs.count()
            for row in runs.values("error_kind").annotate(n=Count("id")):
                run_kinds[row["error_kind"] or "(none)"] += row["n"]
            done = runs.filter(status="completed")
            job_done += [t.timestamp() for t in done.values_list("finished_at", flat=True) if t]
            twice_completed += (
                runs.values("job_id")
                .annotate(c=Count("id", filter=Q(status="completed")))
                .filter(c__gt=1)
                .count()
            )
            for row in runs.values("job_id").annotate(n=Count("id")):
                runs_per_job[row["n"]] += 1
            unsettled_tasks += (
                MarketplaceTask.objects.filter(job__batch_id__in=ids, job__status="completed")
                .exclude(status="completed")
                .count()
            )
    total = sum(statuses.values())
    settled = sum(n for s, n in statuses.items() if s in JOB_TERMINAL)
    return {
        "jobs": total,
        "settled": settled,
        "statuses": dict(statuses),
        "failed_errors": dict(errors.most_common(8)),
        "unsettled_sample": unsettled,
        "runs": runs_total,
        "runs_per_job": {str(k): v for k, v in sorted(runs_per_job.items())},
        "run_error_kinds": dict(run_kinds),
        "steps_completed": steps_completed,
        "steps_reused_existing": tasks_reused,
        "jobs_completed_twice": twice_completed,
        "completed_jobs_with_unfinished_steps": unsettled_tasks,
        "_completions": sorted(completions + job_done),
        "_step_completions": sorted(completions),
    }


def _shorten(message: str | None, n: int = 140) -> str:
    text = re.sub(r"\d{4,}", "N", (message or "").strip().splitlines()[0] if message else "")
    return text[:n]


def gaps(times: list[float], start: float | None = None) -> dict[str, Any]:
    """Longest time without a completion: between consecutive completions (and from
    ``start`` to the first one, reported apart)."""
    if not times:
        return {"longest_s": None, "gaps_over_10s": []}
    longest, at = 0.0, times[0]
    over = []
    for a, b in itertools.pairwise(times):
        gap = b - a
        if gap > longest:
            longest, at = gap, a
        if gap > 10:
            over.append({"from": round(a, 2), "seconds": round(gap, 2)})
    out: dict[str, Any] = {
        "longest_s": round(longest, 2),
        "longest_at": round(at, 2),
        "gaps_over_10s": over,
    }
    if start is not None:
        out["first_completion_after_start_s"] = round(times[0] - start, 2)
    return out


def watchdog_report(workers: Workers, since: float, completions: list[float]) -> dict[str, Any]:
    """The watchdog's row (restarts) and, from its log, each restart with the time the
    cluster stayed down and the step completions of the cluster that was replaced."""
    import bisect

    from tenants.models import WorkerCluster

    row = WorkerCluster.objects.filter(watchdog_pid=workers.pid).order_by("-started_at").first()
    log = workers.restart_log()
    previous_start = since
    restarts = []
    for entry in log:
        done = bisect.bisect_left(completions, entry["restart_at"]) - bisect.bisect_left(
            completions, previous_start
        )
        restarts.append(
            {
                "at_s": round(entry["restart_at"] - since, 2),
                "reason": entry["reason"],
                "down_s": entry.get("down_s"),
                "completions_by_replaced_cluster": done,
            }
        )
        previous_start = entry["started_at"] or entry["restart_at"]
    kinds = Counter(_reason_kind(e["reason"]) for e in log)
    downs = [r["down_s"] for r in restarts if r["down_s"] is not None]
    return {
        "restarts_total": row.restarts_total if row else None,
        "restart_reasons": dict(kinds),
        "restarts": restarts,
        "longest_down_s": max(downs) if downs else None,
        "state_at_end": row.state if row else None,
    }


def _reason_kind(reason: str) -> str:
    if "exited with code" in reason:
        return "cluster process exited"
    if "waited" in reason and "drain" in reason:
        return "drain waited (stall)"
    if "stopped reporting" in reason:
        return "drain stopped reporting"
    return reason[:60]


def _iso_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


# --- 1. kill -9 storm --------------------------------------------------------------------------


def run_kill_storm(
    args: argparse.Namespace, env: dict[str, str], sandbox: SandboxServer
) -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from marketplaces.models import Product
    from orchestration.services import JobSpec, batch_create, resource_set_limits

    rules = fault_rules(args.fault_timeout)
    sandbox.control("POST", "reset", {"seed": args.seed})
    sandbox.control("POST", "faults", {"rules": rules, "seed": args.seed, "replace": True})
    counts = {"ebay": args.ebay, "etsy": args.etsy, "vinted": args.vinted}
    batches: dict[str, list[int]] = {}
    for schema in TENANTS:
        with schema_context(schema):
            resource_set_limits(key="etsy", concurrency=2, rate_per_minute=args.etsy_rate)
            products = list(Product.objects.order_by("sku").values_list("pk", "sku"))
            batches[schema] = []
            for market, n in counts.items():
                specs = [
                    JobSpec(
                        marketplace=market,
                        action="publish",
                        product_id=pk,
                        sku=sku,
                        max_retries=args.max_retries,
                    )
                    for pk, sku in products[:n]
                ]
                batch = batch_create(name=f"chaos storm {market}", jobs=specs, created_by="chaos")
                batches[schema].append(batch.pk)
    total = sum(counts.values()) * len(TENANTS)
    print(
        f"  {total} publish jobs ({counts} per tenant), faults on "
        f"{fault_share(rules, 'ebay'):.0%} of eBay/Etsy requests",
        flush=True,
    )
    counter = JobCounter(os.environ["DATABASE_URL"], batches)
    workers = Workers(
        env,
        Path(str(LOG).format("kill_storm.run_workers")),
        workers=args.workers,
        extra_args=("--stop-grace", "5"),
    )
    rng = random.Random(args.seed)
    kills: list[dict[str, Any]] = []
    nothing_to_kill = 0
    t0 = time.time()
    progress = harness.Progress("storm jobs settled", total)
    try:
        workers.start()
        storm_end = time.monotonic() + args.storm_seconds
        deadline = time.monotonic() + args.storm_timeout
        next_kill = time.monotonic() + rng.uniform(args.kill_min, args.kill_max)
        settled = 0
        while True:
            check_signalled()
            settled, _, steps = counter.poll()
            progress.update(settled, f" steps {steps} kills {len(kills)}")
            if settled >= total:
                break
            if not workers.running():
                raise harness.BenchError(f"run_workers exited:\n{workers.log_text()[-3000:]}")
            now = time.monotonic()
            if now > deadline:
                break
            roles = workers.roles()
            if now >= next_kill and now < storm_end:
                # Nothing to kill while the watchdog restarts the cluster: that turn passes.
                kill = kill_one(workers, roles, rng, t0)
                if kill is None:
                    nothing_to_kill += 1
                else:
                    kills.append(kill)
                next_kill = now + rng.uniform(args.kill_min, args.kill_max)
            time.sleep(0.25)
        storm_s = time.time() - t0
    finally:
        progress.close()
        counter.close()
        stopped = workers.stop()
    report = job_report(batches)
    completions = report.pop("_completions")
    report.pop("_step_completions")
    ledger = ledger_report(sandbox)
    faults = sandbox.control("GET", "faults")
    requests = faults["rules"][0]["fired"] if faults["rules"] else 0
    fired = sum(r["fired"] for r in faults["rules"][1:])
    stall = gaps(completions, start=t0)
    wd = watchdog_report(workers, t0, completions)
    kill_kinds = Counter(k["role"] for k in kills)
    duplicates = ledger["create_duplicates"] + report["jobs_completed_twice"]
    checks = {
        "all_settled": report["settled"] == report["jobs"],
        "create_effects_at_most_once": ledger["create_duplicates"] == 0,
        "no_job_completed_twice": report["jobs_completed_twice"] == 0,
        "longest_stall_under_lease": stall["longest_s"] is not None
        and stall["longest_s"] < LEASE_SECONDS,
        "at_least_800_jobs": total >= 800 or args.scale < 1,
        "faults_at_least_20pct": requests > 0 and fired / requests >= 0.2,
    }
    return {
        "jobs": total,
        "jobs_per_tenant": counts,
        "tenants": list(TENANTS),
        "settled": report["settled"],
        "duplicates": duplicates,
        "longest_stall_s": stall["longest_s"],
        "recover_s": None,
        "restarts": wd["restarts_total"],
        "pass": all(checks.values()),
        "checks": checks,
        "wall_s": round(storm_s, 1),
        "kills": {
            "total": len(kills),
            "by_role": dict(kill_kinds),
            "turns_with_no_cluster_process": nothing_to_kill,
            "log": kills,
        },
        "stall": stall,
        "watchdog": wd,
        "workers_stop": stopped,
        "engine": report,
        "ledger": ledger,
        "faults": {
            "requests": requests,
            "faulted": fired,
            "faulted_share": round(fired / requests, 3) if requests else None,
            "expected_share_http": round(fault_share(rules, "ebay"), 3),
            "expected_share_vinted": round(fault_share(rules, "vinted"), 3),
            "rules": [
                {k: v for k, v in r.items() if v not in (None, 0, "")} for r in faults["rules"]
            ],
        },
    }


def kill_one(
    workers: Workers, roles: dict[str, list[int]], rng: random.Random, t0: float
) -> dict[str, Any] | None:
    """SIGKILL a random process of the cluster (None: there is none right now)."""
    choices = [r for r in KILL_WEIGHTS if (r == "group" and roles.get("qcluster")) or roles.get(r)]
    if not choices:
        return None
    role = rng.choices(choices, weights=[KILL_WEIGHTS[r] for r in choices])[0]
    pid = rng.choice(roles["qcluster" if role == "group" else role])
    workers.kill(role, pid)
    return {"t": round(time.time() - t0, 2), "role": role, "pid": pid}


def ledger_report(sandbox: SandboxServer) -> dict[str, Any]:
    entries = sandbox.control("GET", "ledger")["entries"]
    by_op: Counter = Counter(e["operation"] for e in entries)
    keys: dict[str, Counter] = defaultdict(Counter)
    for e in entries:
        op = e["operation"]
        if op in CREATE_OPS or op in ONCE_OPS:
            keys[op][(e["marketplace"], e["shop"], e.get("sku"))] += 1
        elif op in ("upload_listing_image",):
            keys[op][(e["marketplace"], e["shop"], e.get("listing_id"), e.get("rank"))] += 1
        elif op in ("upload_photo",):
            keys[op][(e["marketplace"], e["shop"], e.get("temp_uuid"), e.get("rank"))] += 1
    dup = {op: sum(n - 1 for n in c.values() if n > 1) for op, c in keys.items()}
    samples = {op: [[*list(k), n] for k, n in c.items() if n > 1][:5] for op, c in keys.items()}
    return {
        "entries": len(entries),
        "by_operation": dict(by_op),
        "duplicates_by_operation": dup,
        "duplicate_samples": {k: v for k, v in samples.items() if v},
        "create_duplicates": sum(dup.get(op, 0) for op in CREATE_OPS),
        "other_repeated_effects": sum(n for op, n in dup.items() if op not in CREATE_OPS),
    }


# --- 2. PostgreSQL restart ----------------------------------------------------------------------


def run_pg_restart(
    args: argparse.Namespace, env: dict[str, str], pg: PrivatePostgres, effects: Path
) -> dict[str, Any]:
    from django.db import connections
    from django_tenants.utils import schema_context

    from orchestration.services import JobSpec, batch_create

    schema = TENANTS[0]
    fx = effects / "pg"
    fx.mkdir()
    params = {"effects": str(fx), "step_ms": args.pg_step_ms}
    with schema_context(schema):
        batch = batch_create(
            name="chaos pg restart",
            jobs=[
                JobSpec(
                    marketplace="chaosfx",
                    action="five",
                    params=params,
                    max_retries=args.max_retries,
                )
            ]
            * args.pg_jobs,
            created_by="chaos",
        )
    batches = {schema: [batch.pk]}
    total, steps_total = args.pg_jobs, args.pg_jobs * 5
    print(f"  {total} chaosfx.five jobs ({args.pg_step_ms:g} ms per step)", flush=True)
    counter = JobCounter(os.environ["DATABASE_URL"], batches)
    workers = Workers(
        env,
        Path(str(LOG).format("pg_restart.run_workers")),
        workers=args.workers,
        extra_args=("--stop-grace", "5"),
    )
    samples: list[tuple[float, int]] = []
    restart: dict[str, float] | None = None
    outage: dict[str, Any] | None = None
    t0 = time.time()
    progress = harness.Progress("pg jobs settled", total)
    try:
        workers.start()
        deadline = time.monotonic() + args.pg_timeout
        while True:
            check_signalled()
            settled, _, steps = counter.poll()
            now = time.time()
            samples.append((now, steps))
            progress.update(settled, f" steps {steps}" + (" (restarted)" if restart else ""))
            if settled >= total or time.monotonic() > deadline:
                break
            if not workers.running():
                raise harness.BenchError(f"run_workers exited:\n{workers.log_text()[-3000:]}")
            if restart is None and _steady(samples, steps_total):
                print("\n  rate steady: pg_ctl restart -m fast", flush=True)
                restart = pg.restart("fast")
                print(f"  restarted in {restart['seconds']}s", flush=True)
            elif restart and outage is None and args.pg_outage > 0:
                if steps > 0.8 * steps_total:
                    outage = {"skipped": "less than 20 % of the steps left"}
                elif _back_to_rate(samples, restart, now):
                    print(f"\n  pg_ctl stop -m fast; {args.pg_outage:g} s; start", flush=True)
                    outage = pg.outage(args.pg_outage)
            time.sleep(0.25)
    finally:
        progress.close()
        counter.close()
        stopped = workers.stop()
    connections.close_all()  # the harness's own connection died with the server
    report = job_report(batches)
    completions = report.pop("_completions")
    steps_at = report.pop("_step_completions")
    effect_counts = [len(p.read_text().splitlines()) for p in fx.iterdir()]
    duplicated_effects = sum(n - 1 for n in effect_counts if n > 1)
    rates = rate_report(steps_at, restart)
    stall = gaps(completions, start=t0)
    wd = watchdog_report(workers, t0, completions)
    lost = report["jobs"] - report["settled"]
    duplicates = duplicated_effects + report["jobs_completed_twice"]
    recover = rates.get("recover_s")
    outage_report: dict[str, Any] = {"skipped": "--pg-outage 0"} if args.pg_outage <= 0 else {}
    if outage and "began" in outage:
        o_rates = rate_report(steps_at, outage, reference=rates.get("rate_before"))
        back = o_rates.get("recover_s")
        since_ready = None if back is None else round(back - (outage["ready"] - outage["began"]), 2)
        outage_report = {
            "down_s": args.pg_outage,
            "times": {k: round(v - t0, 2) for k, v in outage.items() if k != "seconds"},
            "rates": o_rates,
            "recover_s_after_server_back": since_ready,
            "pass": since_ready is not None and since_ready <= PG_RECOVERY_TARGET_S,
        }
    elif outage:
        outage_report = dict(outage)
    checks = {
        "restarted_mid_batch": restart is not None,
        "recovered_within_30s": recover is not None and recover <= PG_RECOVERY_TARGET_S,
        "lost_zero": lost == 0,
        "failed_zero": report["statuses"].get("failed", 0) == 0,
        "duplicated_zero": duplicates == 0,
        "every_effect_once": len(effect_counts) == steps_total and duplicated_effects == 0,
    }
    return {
        "jobs": total,
        "settled": report["settled"],
        "lost": lost,
        "duplicates": duplicates,
        "longest_stall_s": stall["longest_s"],
        "recover_s": recover,
        "restarts": wd["restarts_total"],
        "pass": all(checks.values()),
        "checks": checks,
        "wall_s": round(time.time() - t0, 1),
        "pg_restart": {
            k: (round(v - t0, 2) if k != "seconds" else v) for k, v in (restart or {}).items()
        },
        "rates": rates,
        "outage": outage_report,
        "effects": {
            "files": len(effect_counts),
            "expected": steps_total,
            "applied_more_than_once": duplicated_effects,
        },
        "stall": stall,
        "watchdog": wd,
        "workers_stop": stopped,
        "engine": report,
        "poll_errors_during_restart": counter.errors,
        "cluster_log": cluster_log_facts(workers.log_text()),
    }


def cluster_log_facts(text: str) -> dict[str, Any]:
    """What django-q2 and the drains said about the database going away (PITFALLS: the
    pusher sleeps 10 s after a failed pull, then exits to be reincarnated)."""
    lines = [line for line in text.splitlines() if line.startswith("20")]

    def when(pattern: str) -> list[str]:
        return [line[11:23] for line in lines if pattern in line]

    return {
        "pusher_failed_pulls": when("Failed to pull task from broker"),
        "pusher_reincarnated": when("reincarnated pusher"),
        "drains_lost_connection": len(when("drain lost its database connection")),
        "handed_back": [
            line.split("handed back ", 1)[1] for line in lines if "handed back " in line
        ],
        "watchdog_waited_for_database": len(when("watchdog: database unreachable")),
        "errors": sorted({line[24:140] for line in lines if " ERROR " in line})[:8],
    }


def _steady(samples: list[tuple[float, int]], steps_total: int) -> bool:
    """Time to restart: ≥ 15 s after the first step and two consecutive 5-s windows within
    15 % of each other, or (not steady, noted in the result) 45 % of the steps done."""
    if not samples or samples[-1][1] == 0:
        return False
    now, steps = samples[-1]
    first = next(t for t, s in samples if s > 0)
    if now - first < 3 * WINDOW_S:
        return False
    if steps >= 0.45 * steps_total:
        return True
    a = _count_at(samples, now - WINDOW_S)
    b = _count_at(samples, now - 2 * WINDOW_S)
    r1, r2 = (steps - a) / WINDOW_S, (a - b) / WINDOW_S
    return r1 > 0 and r2 > 0 and abs(r1 - r2) / max(r1, r2) <= 0.15


def _back_to_rate(samples: list[tuple[float, int]], restart: dict[str, float], now: float) -> bool:
    """≥ 12 s after the restart and the last 5-s window at ≥ 90 % of the rate before it (or
    40 s after it, whatever the rate)."""
    r0 = restart["began"]
    if now - r0 < 12:
        return False
    if now - r0 >= 40:
        return True
    pre = (_count_at(samples, r0) - _count_at(samples, r0 - 2 * WINDOW_S)) / (2 * WINDOW_S)
    last = (samples[-1][1] - _count_at(samples, now - WINDOW_S)) / WINDOW_S
    return pre > 0 and last >= PG_RATE_FRACTION * pre


def _count_at(samples: list[tuple[float, int]], t: float) -> int:
    best = 0
    for ts, s in samples:
        if ts > t:
            break
        best = s
    return best


def rate_report(
    times: list[float], restart: dict[str, float] | None, reference: float | None = None
) -> dict[str, Any]:
    """Steps/s in 5-s windows (database timestamps) before and after the restart."""
    if not times:
        return {}
    import bisect

    def count(a: float, b: float) -> int:
        return bisect.bisect_left(times, b) - bisect.bisect_left(times, a)

    first, last = times[0], times[-1]
    out: dict[str, Any] = {
        "first_step_to_last_s": round(last - first, 2),
        "overall_steps_per_s": harness.rate(len(times) - 1, last - first),
    }
    if restart is None:
        return out
    r0 = restart["began"]
    windows = []
    t = r0 - 4 * WINDOW_S
    while t < min(last + WINDOW_S, r0 + 8 * WINDOW_S):
        windows.append(
            {"from_s": round(t - r0, 1), "steps_per_s": round(count(t, t + WINDOW_S) / WINDOW_S, 1)}
        )
        t += WINDOW_S
    before = [count(r0 - (k + 1) * WINDOW_S, r0 - k * WINDOW_S) / WINDOW_S for k in range(2)]
    # ``reference``: the steady rate before the first event (an outage that follows a
    # restart is compared with the rate before both, not with the restart's dip).
    pre = reference if reference else sum(before) / len(before)
    out.update(
        windows_around_restart=windows,
        rate_before=round(pre, 1),
        rate_before_windows=[round(x, 1) for x in before],
    )
    # The first 5-s window starting after the restart began at ≥ 90 % of that rate.
    after_first = next((x for x in times if x >= r0), None)
    out["first_step_after_restart_s"] = round(after_first - r0, 2) if after_first else None
    # The search starts when the server answers again (an outage), never before.
    t = max(r0, restart.get("ready", r0)) if restart.get("stopped") else r0
    recover = None
    while t + WINDOW_S <= last + 0.001:
        if count(t, t + WINDOW_S) / WINDOW_S >= PG_RATE_FRACTION * pre:
            recover = t - r0
            break
        t += 0.25
    out["recover_s"] = round(recover, 2) if recover is not None else None
    out["recover_definition"] = (
        "start of the first 5-s window (after the restart began; for an outage, after the "
        "server was back) whose steps/s is >= 90% of the mean of the two 5-s windows before "
        "the event, in seconds after the event began"
    )
    if recover is None:
        out["note"] = "the batch ended before a full window reached 90 % of the earlier rate"
    gap_after = gaps([x for x in times if x >= r0 - 1])
    out["longest_gap_after_restart_s"] = gap_after["longest_s"]
    return out


# --- 3. ASGI server restart ---------------------------------------------------------------------

INSTRUMENT = """
(() => {
  if (location.pathname !== "/dashboard/") { return; }
  const loads = Number(sessionStorage.getItem("chaosLoads") || "0") + 1;
  sessionStorage.setItem("chaosLoads", String(loads));
  const C = window.__chaos = { opens: [], closes: [], snapshots: [], messages: 0 };
  const Native = window.WebSocket;
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => C.opens.push(Date.now()));
      this.addEventListener("close", (e) => C.closes.push([Date.now(), e.code]));
      this.addEventListener("message", (event) => {
        C.messages += 1;
        try {
          const m = JSON.parse(event.data);
          if (m.type === "snapshot") { C.snapshots.push([Date.now(), m.of]); }
        } catch (err) { /* not JSON */ }
      });
    }
  }
  window.WebSocket = Recorded;
})();
"""

BAR_STATE = """(id) => {
  const el = document.querySelector('[data-live-batch="' + id + '"]');
  if (!el) { return null; }
  const label = el.querySelector('.live-label');
  return { status: el.dataset.status || null, percent: el.dataset.percent || null,
           label: label ? label.textContent : null,
           live: (document.querySelector('[data-live-status]') || {}).textContent || null };
}"""


def run_asgi_restart(
    args: argparse.Namespace, env: dict[str, str], effects: Path
) -> dict[str, Any]:
    from django_tenants.utils import schema_context
    from playwright.sync_api import sync_playwright

    from orchestration.models import Batch, MarketplaceJob
    from orchestration.services import JobSpec, batch_create, jobs_enqueue

    schema = TENANTS[0]
    domain = f"{schema}.localhost"
    fx = effects / "asgi"
    fx.mkdir()
    params = {"effects": str(fx), "step_ms": args.asgi_step_ms}
    with schema_context(schema):
        batch = batch_create(
            name="chaos asgi restart",
            jobs=[
                JobSpec(
                    marketplace="chaosfx",
                    action="three",
                    params=params,
                    max_retries=args.max_retries,
                )
            ]
            * args.asgi_jobs,
            created_by="chaos",
            start=False,
        )
        job_ids = list(MarketplaceJob.objects.filter(batch=batch).values_list("pk", flat=True))
    total = args.asgi_jobs
    print(
        f"  {total} chaosfx.three jobs ({args.asgi_step_ms:g} ms per step), dashboard of {schema}"
    )
    server = harness.AsgiServer(env, Path(str(LOG).format("asgi_restart.uvicorn")), host=domain)
    server2: harness.AsgiServer | None = None
    workers = Workers(
        env,
        Path(str(LOG).format("asgi_restart.run_workers")),
        workers=args.workers,
        extra_args=("--stop-grace", "5"),
    )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread
    out: dict[str, Any] = {"jobs": total, "tenant": schema, "server_down": args.asgi_down}
    t0 = time.time()
    try:
        server.start()
        workers.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                context.add_init_script(INSTRUMENT)
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto(server.url("/admin/login/?next=/dashboard/"))
                page.fill("#id_username", STAFF_USER)
                page.fill("#id_password", STAFF_PASSWORD)
                page.click("input[type=submit]")
                page.wait_for_url(lambda url: url.endswith("/dashboard/"))
                page.wait_for_function("() => window.__chaos && window.__chaos.opens.length > 0")
                page.wait_for_function(
                    f"() => document.querySelector('[data-live-batch=\"{batch.pk}\"]')"
                )
                with schema_context(schema):
                    jobs_enqueue(job_ids=job_ids)
                t_enqueue = time.time()
                out.update(_asgi_restart_phase(args, page, server, batch.pk, total, t_enqueue))
                server2 = out.pop("_server2")
                # Resynchronised without a reload: the bar shows the final status and count.
                final = _wait_final(page, batch.pk, total, args.asgi_timeout)
                with schema_context(schema):
                    db_batch = Batch.objects.get(pk=batch.pk)
                chaos = page.evaluate("window.__chaos")
                loads = int(page.evaluate("sessionStorage.getItem('chaosLoads')") or 0)
                out.update(
                    final_bar=final,
                    batch_status_db=db_batch.status,
                    batch_done_db=db_batch.completed_jobs + db_batch.failed_jobs,
                    page_loads=loads,
                    ws_opens=len(chaos["opens"]),
                    ws_closes=[[round(t / 1000 - t0, 2), c] for t, c in chaos["closes"]],
                    snapshots=len(chaos["snapshots"]),
                    messages=chaos["messages"],
                )
                context.close()
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
        for s in (server, server2):
            if s is not None:
                with contextlib.suppress(Exception):
                    s.stop()
        out["workers_stop"] = workers.stop()
    report = job_report({schema: [batch.pk]})
    report.pop("_completions")
    report.pop("_step_completions")
    effect_counts = [len(p.read_text().splitlines()) for p in fx.iterdir()]
    final = out.get("final_bar") or {}
    reached = final.get("status") == out.get("batch_status_db") and final.get("label", "").endswith(
        f"({total}/{total})"
    )
    checks = {
        "reconnected": out.get("reconnect_after_ready_s") is not None,
        "final_status_shown_without_reload": bool(reached) and out.get("page_loads") == 1,
        "restart_was_mid_batch": (out.get("done_at_kill") or 0) < total
        and (out.get("done_db_at_reconnect") or total) < total,
        "all_settled": report["settled"] == report["jobs"],
        "no_duplicates": report["jobs_completed_twice"] == 0 and all(n == 1 for n in effect_counts),
    }
    out.update(
        settled=report["settled"],
        duplicates=report["jobs_completed_twice"] + sum(n - 1 for n in effect_counts if n > 1),
        longest_stall_s=None,
        restarts=None,
        recover_s=out.get("reconnect_after_kill_s"),
        **{"pass": all(checks.values())},
        checks=checks,
        engine=report,
        wall_s=round(time.time() - t0, 1),
    )
    return out


def _bar(page, batch_id: int) -> dict[str, Any] | None:
    return page.evaluate(BAR_STATE, batch_id)


def _done_of(bar: dict[str, Any] | None) -> int | None:
    if not bar or not bar.get("label"):
        return None
    m = re.search(r"\((\d+)/(\d+)\)", bar["label"])
    return int(m.group(1)) if m else None


def _asgi_restart_phase(
    args, page, server: harness.AsgiServer, batch_id: int, total: int, t_enqueue: float
) -> dict[str, Any]:
    """Wait until the bar moved (≥ 10 %), take the server down, start it again on the same
    port, and wait for the page's next WebSocket ``open``."""
    deadline = time.monotonic() + 60
    while True:
        check_signalled()
        bar = _bar(page, batch_id)
        done = _done_of(bar) or 0
        if done >= max(1, total // 10):
            break
        if time.monotonic() > deadline:
            raise harness.BenchError(f"the dashboard bar did not move in 60s: {bar}")
        time.sleep(0.2)
    opens_before = page.evaluate("window.__chaos.opens.length")
    t_kill = time.time()
    assert server.proc is not None
    if args.asgi_down == "kill":
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        server._log.close()
        server.proc = None
    else:
        server.stop()
    t_down = time.time()
    server2 = harness.AsgiServer(
        server.env, server.log_path.with_suffix(".2.tmp"), host=server.host, port=server.port
    )
    server2.start()
    t_ready = time.time()
    deadline = time.monotonic() + 60
    while page.evaluate("window.__chaos.opens.length") <= opens_before:
        check_signalled()
        if time.monotonic() > deadline:
            raise harness.BenchError("the page did not reconnect within 60s of the restart")
        time.sleep(0.05)
    t_open = page.evaluate(f"window.__chaos.opens[{opens_before}]") / 1000
    done_db = _db_done(batch_id)
    time.sleep(0.3)  # the snapshot that follows the subscription
    bar_after = _bar(page, batch_id)
    return {
        "_server2": server2,
        "done_at_kill": done,
        "bar_at_kill": bar,
        "server_down_s": round(t_ready - t_kill, 2),
        "server_stop_s": round(t_down - t_kill, 2),
        "kill_after_enqueue_s": round(t_kill - t_enqueue, 2),
        "reconnect_after_kill_s": round(t_open - t_kill, 2),
        "reconnect_after_ready_s": round(t_open - t_ready, 2),
        "done_db_at_reconnect": done_db,
        "bar_after_reconnect": bar_after,
        "done_shown_after_reconnect": _done_of(bar_after),
    }


def _db_done(batch_id: int) -> int:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    with schema_context(TENANTS[0]):
        b = Batch.objects.get(pk=batch_id)
        return b.completed_jobs + b.failed_jobs + b.cancelled_jobs + b.skipped_jobs


def _wait_final(page, batch_id: int, total: int, timeout: float) -> dict[str, Any] | None:
    from orchestration.states import BATCH_TERMINAL

    deadline = time.monotonic() + timeout
    bar = None
    while time.monotonic() < deadline:
        check_signalled()
        bar = _bar(page, batch_id)
        if bar and bar.get("status") in BATCH_TERMINAL and _done_of(bar) == total:
            return bar
        time.sleep(0.2)
    return bar


# --- results ------------------------------------------------------------------------------------


def assemble(args, machine, database, setup, results) -> dict[str, Any]:
    rows = []
    for name in args.scenarios:
        r = results.get(name, {})
        rows.append(
            {
                "scenario": name,
                "jobs": r.get("jobs"),
                "settled": r.get("settled"),
                "duplicates": r.get("duplicates"),
                "longest_stall_s": r.get("longest_stall_s"),
                "recover_s": r.get("recover_s"),
                "restarts": r.get("restarts"),
                "pass": bool(r.get("pass")),
            }
        )
        outage = r.get("outage") or {}
        if name == "pg_restart" and "pass" in outage:
            rows.append(
                {
                    "scenario": f"pg_outage_{outage['down_s']:g}s (same batch)",
                    "jobs": r.get("jobs"),
                    "settled": r.get("settled"),
                    "duplicates": r.get("duplicates"),
                    "longest_stall_s": outage["rates"].get("longest_gap_after_restart_s"),
                    "recover_s": outage["recover_s_after_server_back"],
                    "restarts": r.get("restarts"),
                    "pass": bool(outage["pass"] and r.get("settled") == r.get("jobs")),
                }
            )
    found = [d for name in args.scenarios for d in findings(name, results.get(name, {}))]
    defects = [d for d in found if not d.get("observation")]
    observations = [d for d in found if d.get("observation")]
    return {
        "benchmark": NAME,
        "command": command_line(args),
        "started_at": harness.now_iso(),
        "machine": machine,
        "git": harness.git_state(),
        "database": database,
        "setup": setup,
        "settings": {
            "workers": args.workers,
            "seed": args.seed,
            "scale": args.scale,
            "ORCHESTRATION_RETRY_BASE_SECONDS": args.retry_base,
            "ORCHESTRATION_RETRY_MAX_SECONDS": args.retry_max,
            "max_retries": args.max_retries,
            "etsy_rate_per_minute": args.etsy_rate,
            "fault_timeout_s": args.fault_timeout,
            "kill_interval_s": [args.kill_min, args.kill_max],
            "kill_weights": KILL_WEIGHTS,
            "storm_seconds": args.storm_seconds,
            "pg_step_ms": args.pg_step_ms,
            "asgi_step_ms": args.asgi_step_ms,
            "asgi_down": args.asgi_down,
            "watchdog": "manage.py run_workers --stop-grace 5 (stall 10 s, sweep 5 s)",
        },
        "targets": {
            "kill_storm": "every job settled; each create effect at most once per (shop, SKU) "
            "in the sandbox ledger; no job completed twice; longest time without a "
            "completed step < lease (60 s); >= 800 jobs; >= 20 % of requests faulted",
            "pg_restart": "rate back to >= 90 % within 30 s; lost = 0; duplicated = 0 (the extra "
            "outage row: within 30 s of the server being back)",
            "asgi_restart": "page reconnects and shows the batch's final status and progress "
            "without a reload",
        },
        "summary": rows,
        "defects": defects,
        "observations": observations,
        "scenarios": results,
    }


def findings(name: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    """Failed checks, stated as findings (the evidence is in the scenario's section)."""
    if "error" in r:
        return [
            {
                "scenario": name,
                "what": "scenario could not complete",
                "evidence": r["error"][-1500:],
            }
        ]
    out = []
    for check, ok in (r.get("checks") or {}).items():
        if not ok:
            out.append({"scenario": name, "check": check, "evidence": _evidence(name, check, r)})
    outage = r.get("outage") or {}
    if outage.get("pass") is False:
        out.append(
            {
                "scenario": name,
                "check": "pg_outage_recovered_within_30s_of_server_back",
                "evidence": {
                    k: outage["rates"].get(k)
                    for k in (
                        "rate_before",
                        "recover_s",
                        "first_step_after_restart_s",
                        "longest_gap_after_restart_s",
                        "windows_around_restart",
                    )
                },
            }
        )
    wd = r.get("watchdog") or {}
    held = [x for x in wd.get("restarts", []) if (x.get("down_s") or 0) >= 10]
    if held:
        longest = max(held, key=lambda x: x["down_s"])
        working = [x for x in held if x.get("completions_by_replaced_cluster")]
        after_work = max(working, key=lambda x: x["down_s"]) if working else None
        what = (
            f"watchdog restart backoff left the cluster down {longest['down_s']} s with work "
            f"ready (lease {LEASE_SECONDS:g} s)"
        )
        if after_work:
            what += (
                f"; {after_work['down_s']} s right after replacing a cluster that had completed "
                f"{after_work['completions_by_replaced_cluster']} steps"
            )
        out.append(
            {
                "scenario": name,
                "what": what,
                "detail": "orchestration/watchdog.py Watchdog.restart(): with more than 3 restarts "
                "in the last hour it sleeps min(60, 2 ** (recent - 3)) s before starting the next "
                "cluster, whether or not the cluster it replaces had made progress (the backoff is "
                "meant for a cluster crashing at start). Processes killed one at a time while the "
                "cluster works (OOM killer, kill -9) thus stop all work for 2, 4, 8, 16, 32, then "
                "60 s per restart: from the 9th restart in an hour every restart costs a full lease "
                "of no progress, and the restart count only decays after an hour.",
                "evidence": {"restarts": wd.get("restarts"), "stall": r.get("stall")},
                "reproduce": "make chaos CHAOS_ARGS='--only kill_storm', or: manage.py run_workers; "
                "kill -9 the qcluster process group (or its sentinel) every ~5 s while a batch runs; "
                "the log shows each 'restarting the cluster' followed by 'started cluster pid' "
                "0, 0, 0, 2, 4, 8, 16, 32, 60 s later.",
            }
        )
    facts = r.get("cluster_log") or {}
    rates = r.get("rates") or {}
    if facts.get("pusher_failed_pulls") and (rates.get("longest_gap_after_restart_s") or 0) >= 3:
        out.append(
            {
                "scenario": name,
                "observation": True,
                "what": f"after the PostgreSQL restart no step completed for "
                f"{rates['longest_gap_after_restart_s']} s although the server was back in "
                f"{(r.get('pg_restart') or {}).get('seconds')} s",
                "detail": "the drains survive the restart (they reconnect and hand back their "
                "claims), but a drain that reaches its DRAIN_SECONDS hand-back in the next 10 s "
                "chains its successor through django-q2, whose pusher is asleep for 10 s after its "
                "failed pull and then exits to be reincarnated (PITFALLS): the work waits for "
                "the pusher. Bounded by ~10 s (under the watchdog's 10-s stall rule, which does not "
                "fire); within the 30-s target.",
                "evidence": {"cluster_log": facts, "windows": rates.get("windows_around_restart")},
            }
        )
    if name == "kill_storm" and r.get("ledger", {}).get("other_repeated_effects"):
        out.append(
            {
                "scenario": name,
                "check": "non-create effects repeated (info)",
                "evidence": {
                    "duplicates_by_operation": r["ledger"]["duplicates_by_operation"],
                    "samples": r["ledger"]["duplicate_samples"],
                },
            }
        )
    return out


def _evidence(name: str, check: str, r: dict[str, Any]) -> Any:
    e = r.get("engine", {})
    if check in ("all_settled", "lost_zero", "failed_zero"):
        return {
            "statuses": e.get("statuses"),
            "failed_errors": e.get("failed_errors"),
            "unsettled_sample": e.get("unsettled_sample"),
        }
    if check == "longest_stall_under_lease":
        return {"stall": r.get("stall"), "watchdog": r.get("watchdog")}
    if check == "recovered_within_30s":
        rates = r.get("rates", {})
        return {
            k: rates.get(k)
            for k in (
                "rate_before",
                "recover_s",
                "first_step_after_restart_s",
                "longest_gap_after_restart_s",
                "windows_around_restart",
            )
        }
    if check == "create_effects_at_most_once":
        return r.get("ledger", {}).get("duplicate_samples")
    return {k: r.get(k) for k in ("duplicates", "effects", "final_bar", "page_loads") if k in r}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "pass" if v else "**FAIL**"
    return f"{v + 0.0:g}" if isinstance(v, float) else str(v)


def table(result: dict[str, Any]) -> str:
    head = (
        "| scenario | jobs | settled | duplicates | longest stall (s) | time to recover (s) "
        "| restarts | result |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for row in result["summary"]:
        lines.append(
            "| "
            + " | ".join(
                _fmt(row[k])
                for k in (
                    "scenario",
                    "jobs",
                    "settled",
                    "duplicates",
                    "longest_stall_s",
                    "recover_s",
                    "restarts",
                    "pass",
                )
            )
            + " |"
        )
    return "\n".join(lines)


def write_docs(result: dict[str, Any]) -> None:
    """Replace what is between the chaos markers in docs/reliability.md (only that)."""
    text = DOCS.read_text() if DOCS.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    s = result["scenarios"]
    notes = []
    ks = s.get("kill_storm", {})
    if "kills" in ks:
        notes.append(
            f"- kill_storm: {ks['kills']['total']} SIGKILLs during the "
            f"{result['settings']['storm_seconds']:g}-s storm "
            f"({', '.join(f'{k} {v}' for k, v in ks['kills']['by_role'].items())}; "
            f"{ks['kills'].get('turns_with_no_cluster_process', 0)} turns found no cluster "
            f"process up), every job settled after {ks['wall_s']} s; "
            f"{ks['faults']['faulted_share']:.0%} of {ks['faults']['requests']} marketplace "
            f"requests faulted; ledger {ks['ledger']['entries']} effects, create duplicates "
            f"{ks['ledger']['create_duplicates']}; statuses {ks['engine']['statuses']}; "
            f"longest cluster downtime between restarts {ks['watchdog'].get('longest_down_s')} s."
        )
    pr = s.get("pg_restart", {})
    if "rates" in pr:
        r = pr["rates"]
        notes.append(
            f"- pg_restart: {r.get('rate_before')} steps/s before; `pg_ctl restart -m fast` took "
            f"{pr['pg_restart'].get('seconds')} s; longest time without a completed step after "
            f"it {r.get('longest_gap_after_restart_s')} s; a 5-s window back at >= 90 % from "
            f"{r.get('recover_s')} s; lost {pr['lost']}, duplicated {pr['duplicates']}."
        )
    out = pr.get("outage") or {}
    if "rates" in out:
        notes.append(
            f"- pg_outage (same batch, after the restart): `pg_ctl stop -m fast`, "
            f"{out['down_s']:g} s down, start; longest time without a completed step "
            f"{out['rates'].get('longest_gap_after_restart_s')} s; rate back at >= 90 % {out['recover_s_after_server_back']} s after "
            f"the server was back (target <= 30 s)."
        )
    ar = s.get("asgi_restart", {})
    if "reconnect_after_kill_s" in ar:
        notes.append(
            f"- asgi_restart: server {ar['server_down']}ed at {ar['done_at_kill']}/{ar['jobs']} jobs, "
            f"back after {ar['server_down_s']} s; page reconnected {ar['reconnect_after_kill_s']} s "
            f"after the kill ({ar['reconnect_after_ready_s']} s after the server answered), "
            f"final bar `{(ar.get('final_bar') or {}).get('label')}` "
            f"({(ar.get('final_bar') or {}).get('status')}), page loads {ar.get('page_loads')}."
        )
    for d in result["defects"]:
        notes.append(f"- **finding** ({d['scenario']}): {d.get('check') or d.get('what')}")
    for d in result.get("observations", []):
        notes.append(f"- observation ({d['scenario']}): {d['what']}")
    block = (
        f"{BEGIN}\n<!-- generated by `make chaos` (bench/chaos.py); edits here are overwritten -->\n\n"
        f"Last run: {result['started_at']}, commit {str(result['git'].get('commit'))[:10]}, "
        f"`{result['command']}`, {result['duration_s']} s, {result['machine']['cpu_count']} CPUs "
        f"(load {result['machine'].get('loadavg_at_start')}).\n\n{table(result)}\n\n"
        + "\n".join(notes)
        + f"\n\nDetails: `bench/results/chaos.json`.\n{END}"
    )
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOCS.write_text(text[:start] + block + text[end:])


def print_summary(result: dict[str, Any], path: Path) -> None:
    print(f"\n[{NAME}] {result['duration_s']} s; results in {path.relative_to(harness.BASE_DIR)}")
    print(
        f"  {'scenario':13} {'jobs':>5} {'settled':>7} {'dups':>4} {'stall s':>7} "
        f"{'recover s':>9} {'restarts':>8}  result"
    )
    for row in result["summary"]:
        print(
            f"  {row['scenario']:13} {_fmt(row['jobs']):>5} {_fmt(row['settled']):>7} "
            f"{_fmt(row['duplicates']):>4} {_fmt(row['longest_stall_s']):>7} "
            f"{_fmt(row['recover_s']):>9} {_fmt(row['restarts']):>8}  "
            f"{'pass' if row['pass'] else 'FAIL'}"
        )
    for d in result.get("observations", []):
        print(f"  observation [{d['scenario']}]: {d['what']}")
    for d in result["defects"]:
        print(
            f"  finding [{d['scenario']}]: {d.get('check') or d.get('what')}: "
            f"{json.dumps(d.get('evidence'), default=str)[:300]}"
        )


if __name__ == "__main__":
    main()
