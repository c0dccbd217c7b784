"""Scenario 2: steps/s around ``pg_ctl restart`` and an outage, and the time to recover."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos.constants import LOG, PG_RATE_FRACTION, PG_RECOVERY_TARGET_S, TENANTS, WINDOW_S
from bench.chaos.pg import PrivatePostgres
from bench.chaos.procs import Workers
from bench.chaos.reports import JobCounter, gaps, job_report, watchdog_report
from bench.chaos.setup import check_signalled


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
