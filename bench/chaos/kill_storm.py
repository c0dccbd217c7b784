"""Scenario 1: publish jobs against a faulty sandbox while cluster processes get SIGKILL."""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos.constants import CREATE_OPS, KILL_WEIGHTS, LEASE_SECONDS, LOG, ONCE_OPS, TENANTS
from bench.chaos.procs import SandboxServer, Workers
from bench.chaos.reports import JobCounter, gaps, job_report, watchdog_report
from bench.chaos.setup import check_signalled


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
