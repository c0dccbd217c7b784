"""The result: settings, the JSON document and the printed summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import harness
from bench.live_admin.admin import admin_findings
from bench.live_admin.cli import command_line
from bench.live_admin.constants import (
    ACTION,
    MARKETPLACE,
    NAME,
    REDUCED_MOTION,
    SEARCH_SKU,
    STATUS_FILTER,
    TARGET_P95_MS,
)


def describe_settings(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from orchestration import conf, live

    q = settings.Q_CLUSTER
    keys = ("workers", "poll", "queue_limit", "bulk", "save_limit", "timeout", "retry")
    return {
        "jobs": args.jobs,
        "job_kind": f"{MARKETPLACE}.{ACTION}",
        "step_sleep_ms": args.step_ms,
        "warmup_jobs": args.warmup_jobs,
        "workers": args.workers,
        "layers": args.layer_list,
        "redis_url": args.redis_url,
        "debug": settings.DEBUG,
        "q_cluster": {k: q.get(k) for k in keys},
        "orchestration": {k: conf.get(k) for k in conf.DEFAULTS},
        "live_progress_interval_s": live.PROGRESS_INTERVAL,
        "live_send_chunk": live.SEND_CHUNK,
        "small_rows": args.small_rows,
        "large_rows": args.large_rows,
        "requests_per_view": args.requests,
        "search": SEARCH_SKU,
        "status_filter": STATUS_FILTER,
        "browser": f"{harness.CHROMIUM} {' '.join(harness.CHROMIUM_ARGS)}",
        "browser_reduced_motion": REDUCED_MOTION,
    }


def describe_database(embedded: bool, name: str) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'")
        trgm = bool(cursor.fetchone()[0])
    return harness.describe_database(embedded, name, pg_trgm_available=trgm)


def assemble(args, machine, database, setup, live, admin, settings_used) -> dict[str, Any]:
    summary: dict[str, Any] = {"live": {}, "live_under_load": {}, "admin": {}}
    for run, result in live.items():
        where = "live" if result.get("load_mode", "none") == "none" else "live_under_load"
        summary[where][run] = live_summary(result)
    admin_from = None
    if admin is None:  # --skip-admin: keep the last measured admin part, named as such
        admin, admin_from = previous_admin()
    if admin:
        summary["admin"] = admin["ratios"]
        summary["admin_findings"] = admin_findings(admin)
        if admin_from:
            summary["admin_measured_at"] = admin_from
    return {
        "benchmark": NAME,
        "timestamp": harness.now_iso(),
        "command": command_line(args),
        "summary": summary,
        "machine": machine,
        "git": harness.git_state(),
        "database": database,
        "versions": harness.package_versions(
            "django",
            "django-q2",
            "django-tenants",
            "channels",
            "channels-postgres",
            "channels-redis",
            "uvicorn",
            "websockets",
            "psycopg",
            "playwright",
        ),
        "settings": settings_used,
        "setup": setup,
        "live": live,
        "admin": admin,
        "notes": [
            "commit side: the message's `committed` (the worker's clock right after its "
            "transaction committed) when the message that changed the DOM is that very state; "
            "else (commit_stamps says how often) the state's own database timestamp: "
            "MarketplaceJob.started_at (the claim's start) / completed_at, both set inside the "
            "transaction; the batch label's value k is matched with the k-th completed_at of "
            "the batch. state_to_dom: always from the state's timestamp (the figure before "
            "session 12)",
            "browser side: Date.now() in a MutationObserver callback (same machine clock); "
            "ws_to_dom and dom_to_next_frame use performance.now() inside the page",
            "commit_to_dom: one sample per value the page showed; state_to_first_shown: one "
            "per committed change (running, completed, each batch completion), the first moment "
            "the page showed it or a later state (coalesced progress waits included)",
            "the redis run sets REDIS_URL for uvicorn and the cluster: channel layer AND "
            "django-q2 broker in Redis",
            "not a test: nothing asserts on these figures",
        ],
    }


def previous_admin() -> tuple[dict[str, Any] | None, str | None]:
    import json

    path = harness.RESULTS_DIR / f"{NAME}.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
    admin = old.get("admin")
    if not admin:
        return None, None
    when = (old.get("summary") or {}).get("admin_measured_at") or old.get("timestamp")
    return admin, f"{when} (not rerun: --skip-admin)"


def live_summary(result: dict[str, Any]) -> dict[str, Any]:
    dom = result["commit_to_dom_ms"]

    def pick(figure: str, keys=("p50", "p95", "p99")) -> dict[str, Any]:
        return {k: result.get(figure, {}).get("all", {}).get(k) for k in keys}

    out = {
        "commit_to_dom_ms": {k: dom["all"].get(k) for k in ("count", "p50", "p95", "p99")},
        "p95_within_100ms": result["target_met"],
        "workers": result.get("workers"),
        "cpu_pressure_pct": result.get("cpu_pressure_pct"),
        "loadavg_after": result.get("loadavg_after"),
        "by_source": {
            source: {k: d.get(k) for k in ("count", "p50", "p95", "p99")}
            for source, d in dom.items()
            if source != "all"
        },
        "state_to_first_shown_ms_all": pick(
            "state_to_first_shown_ms", ("count", "p50", "p95", "p99")
        ),
        "state_to_dom_ms_all": pick("state_to_dom_ms"),
        "state_to_commit_ms_all": pick("state_to_commit_ms"),
        "commit_stamps": result.get("commit_stamps"),
        "commit_to_ws_ms_all": pick("commit_to_ws_ms"),
        "ws_to_dom_ms_all": pick("ws_to_dom_ms"),
        "event_to_dom_ms_all": pick("event_to_dom_ms"),
    }
    split = result.get("layer_split_ms") or {}
    if split:
        for leg in ("emit_to_commit_ms", "commit_to_layer_ms", "layer_to_socket_ms",
                    "socket_to_page_ms", "layer_to_page_ms"):  # fmt: skip
            out[f"{leg}_all"] = {
                k: (split.get(leg) or {}).get("all", {}).get(k) for k in ("p50", "p95", "p99")
            }
    if "commit_to_ws_ms_by_type" in result:
        out["commit_to_ws_ms_by_type"] = result["commit_to_ws_ms_by_type"]
    load = result.get("load")
    if load:
        out["load"] = {
            k: load.get(k)
            for k in (
                "jobs", "env", "window_s", "load_steps_per_s", "all_steps_per_s",
                "min_1s_bucket", "median_1s_bucket", "load_covered_window", "target_reached",
            )
        }  # fmt: skip
    return out


def print_summary(result: dict[str, Any], path: Path) -> None:
    lines = ["", f"== {NAME} ({result['machine']['cpu_count']} CPUs, load "
             f"{result['machine']['loadavg_at_start']} -> {result['machine']['loadavg_at_end']}, "
             f"PostgreSQL {result['database']['server_version']})"]  # fmt: skip
    runs = {**result["summary"]["live"], **result["summary"].get("live_under_load", {})}
    for layer, s in runs.items():
        d = s["commit_to_dom_ms"]
        load = s.get("load") or {}
        lines.append(
            f"  live [{layer}] commit -> DOM: p50 {d['p50']} / p95 {d['p95']} / p99 {d['p99']} ms "
            f"({d['count']} updates); p95 <= {TARGET_P95_MS:g} ms: "
            f"{'yes' if s['p95_within_100ms'] else 'NO'}"
            + (
                f"; CPU pressure {s.get('cpu_pressure_pct')} %"
                f"; {load.get('all_steps_per_s')} steps/s in the window ({s.get('workers')} "
                f"workers, min 1-s bucket {load.get('min_1s_bucket')}, load covered it: "
                f"{load.get('load_covered_window')})"
                if load
                else ""
            )
        )
        c = s.get("commit_to_ws_ms_all") or {}
        st = s.get("state_to_dom_ms_all") or {}
        ec = s.get("emit_to_commit_ms_all") or {}
        el = s.get("commit_to_layer_ms_all") or {}
        lp = s.get("layer_to_page_ms_all") or {}
        ls = s.get("layer_to_socket_ms_all") or {}
        sp = s.get("socket_to_page_ms_all") or {}
        lines.append(
            f"      state timestamp -> DOM p50 {st.get('p50')} / p95 {st.get('p95')} / p99 "
            f"{st.get('p99')} ms; commit -> WebSocket arrival p50 {c.get('p50')} / p95 "
            f"{c.get('p95')} ms; every message: emit -> commit p50 {ec.get('p50')} / p95 "
            f"{ec.get('p95')}, commit -> layer p50 {el.get('p50')} / p95 {el.get('p95')}, "
            f"layer -> page p50 {lp.get('p50')} / p95 {lp.get('p95')} ms (layer -> uvicorn's "
            f"socket p50 {ls.get('p50')} / p95 {ls.get('p95')}, socket -> page p50 "
            f"{sp.get('p50')} / p95 {sp.get('p95')})"
        )
        for source, b in s["by_source"].items():
            lines.append(
                f"      {source:<16} p50 {b['p50']} / p95 {b['p95']} / p99 {b['p99']} ms "
                f"({b['count']})"
            )
        f = s["state_to_first_shown_ms_all"]
        w = s["ws_to_dom_ms_all"]
        lines.append(
            f"      per committed change, from its state timestamp: p50 {f['p50']} / p95 {f['p95']} / p99 {f['p99']} ms "
            f"({f['count']}); WebSocket arrival -> DOM p50 {w['p50']} / p95 {w['p95']} ms"
        )
    for name, r in result["summary"]["admin"].items():
        lines.append(
            f"  admin {name:<16} {r['small_ms']:>7} ms -> {r['large_ms']:>7} ms  x{r['ratio']}  "
            f"({'<= 2x' if r['within_2x'] else 'NOT within 2x'}; queries "
            f"{r['queries_small']} -> {r['queries_large']}; rows {r['rows_shown_small']} -> "
            f"{r['rows_shown_large']}; SQL {r['engine_sql_ms_small']} -> "
            f"{r['engine_sql_ms_large']} ms)"
        )
    for finding in result["summary"].get("admin_findings", []):
        lines.append(f"    - {finding}")
    lines += harness.measured_lines(result, path, took=True)
    print("\n".join(lines))
