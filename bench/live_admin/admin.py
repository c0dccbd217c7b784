"""Part 2: the admin lists timed over HTTP at a small and a large job table, with their SQL."""

from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any

from bench import harness
from bench.live_admin.constants import (
    DOMAIN,
    NAME,
    PASSWORD,
    SCHEMA,
    SEARCH_SKU,
    STATUS_FILTER,
    TARGET_RATIO,
    USERNAME,
)
from bench.live_admin.fill import autovacuum_workers, fill_jobs, filler_batches, tenant_cursor


def views(batch_id: int) -> dict[str, str]:
    jobs = "/admin/orchestration/marketplacejob/"
    return {
        "jobs": jobs,
        "jobs_by_status": f"{jobs}?status__exact={STATUS_FILTER}",
        "jobs_completed": f"{jobs}?status__exact=completed",
        "jobs_search_sku": f"{jobs}?q={SEARCH_SKU}",
        "jobs_of_batch": f"{jobs}?batch={batch_id}",
        "batches": "/admin/orchestration/batch/",
    }


def http_login(server: harness.AsgiServer) -> dict[str, str]:
    """Log in through the admin's form; returns the cookies (session, CSRF)."""
    import httpx

    headers = {"Host": f"{server.host}:{server.port}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers) as client:
        page = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not token:
            raise harness.BenchError("no CSRF token on the login page")
        answer = client.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token.group(1), "username": USERNAME,
                  "password": PASSWORD, "next": "/admin/"},
            headers={"Referer": server.url("/admin/login/")},
        )  # fmt: skip
        cookies = dict(client.cookies)
    if answer.status_code != 302 or "sessionid" not in cookies:
        raise harness.BenchError(f"login failed: HTTP {answer.status_code}")
    return cookies


def time_views(
    server: harness.AsgiServer, cookies: dict[str, str], paths: dict[str, str], n: int
) -> dict[str, Any]:
    """``n`` timed GETs per view (after 2 untimed), interleaved in rounds."""
    import httpx

    headers = {"Host": f"{server.host}:{server.port}"}
    timings: dict[str, list[float]] = {name: [] for name in paths}
    info: dict[str, dict[str, Any]] = {}
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers=headers, cookies=cookies, timeout=60
    ) as client:
        for round_ in range(n + 2):
            for name, path in paths.items():
                t = time.perf_counter()
                response = client.get(path)
                elapsed = (time.perf_counter() - t) * 1000
                if response.status_code != 200:
                    raise harness.BenchError(f"GET {path}: HTTP {response.status_code}")
                if round_ >= 2:
                    timings[name].append(elapsed)
                rows = response.text.count('name="_selected_action"')
                info[name] = {"path": path, "bytes": len(response.content),
                              "estimated_count_shown": "(estimated)" in response.text,
                              "result_rows": rows}  # fmt: skip
    out = {}
    for name, values in timings.items():
        out[name] = {
            **info[name],
            "median_ms": round(statistics.median(values), 1),
            "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1),
            "requests": len(values),
        }
    return out


def count_queries(paths: dict[str, str], *, plans: bool) -> dict[str, Any]:
    """SQL per page from an in-process client, and ``EXPLAIN (ANALYZE, BUFFERS)`` of each
    query the page runs on the job or batch table (execution time; plan when ``plans``)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_tenants.utils import schema_context

    with schema_context(SCHEMA):
        user = get_user_model().objects.get(username=USERNAME)
        client = Client(HTTP_HOST=DOMAIN)
        client.force_login(user)
    out: dict[str, Any] = {}
    for name, path in paths.items():
        client.get(path)  # warm
        with CaptureQueriesContext(connection) as ctx:
            t = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - t) * 1000
        connection.set_schema_to_public()
        queries = ctx.captured_queries
        entry: dict[str, Any] = {
            "status": response.status_code,
            "queries": len(queries),
            "in_process_ms": round(elapsed, 1),
            "db_ms_captured": round(sum(float(q["time"]) for q in queries) * 1000, 1),
            "engine_table_queries": [],
        }
        for query in queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT") or not (
                '"orchestration_marketplacejob"' in sql or 'FROM "orchestration_batch"' in sql
            ):
                continue
            with tenant_cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                plan = [row[0] for row in cursor.fetchall()]
            connection.set_schema_to_public()
            timing = next((line for line in plan if line.startswith("Execution Time")), "")
            item: dict[str, Any] = {
                "sql": sql if len(sql) <= 400 else f"{sql[:200]} ... {sql[-200:]}",
                "execution_ms": float(timing.split()[2]) if timing else None,
            }
            if plans:
                item["plan"] = plan
            entry["engine_table_queries"].append(item)
        out[name] = entry
    return out


def run_admin(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    print(f"  admin lists: {args.small_rows:,} then {args.large_rows:,} jobs ...", flush=True)
    batches = filler_batches()
    with schema_context(SCHEMA):
        watched = Batch.objects.filter(name__startswith="live ").order_by("pk").first()
    paths = views(watched.pk if watched else batches[0])
    server = harness.AsgiServer(env, harness.RESULTS_DIR / f"{NAME}.admin.uvicorn.log.tmp",
                                host=DOMAIN)  # fmt: skip
    phases: dict[str, Any] = {}
    with server:
        cookies = http_login(server)
        for label, rows in (("small", args.small_rows), ("large", args.large_rows)):
            fill = fill_jobs(rows, args.large_rows, batches)
            print(
                f"  {fill['rows']:,} jobs ({fill['inserted']:,} inserted in {fill['insert_s']}s, "
                f"VACUUM ANALYZE {fill['vacuum_analyze_s']}s); timing {len(paths)} views ...",
                flush=True,
            )
            fill["autovacuum_workers_before_timing"] = autovacuum_workers()
            timed = time_views(server, cookies, paths, args.requests)
            queries = count_queries(paths, plans=label == "large")
            phases[label] = {"fill": fill, "views": timed, "queries": queries}
    with tenant_cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
            [SCHEMA, "job_%_trgm_idx"],
        )
        trigram = [row[0] for row in cursor.fetchall()]
    ratios = {}
    for name in paths:
        small = phases["small"]["views"][name]["median_ms"]
        large = phases["large"]["views"][name]["median_ms"]
        ratio = round(large / small, 2) if small else None
        ratios[name] = {
            "small_ms": small,
            "large_ms": large,
            "ratio": ratio,
            "within_2x": bool(ratio is not None and ratio <= TARGET_RATIO),
            "queries_small": phases["small"]["queries"][name]["queries"],
            "queries_large": phases["large"]["queries"][name]["queries"],
            "rows_shown_small": phases["small"]["views"][name]["result_rows"],
            "rows_shown_large": phases["large"]["views"][name]["result_rows"],
            "engine_sql_ms_small": sql_ms(phases["small"]["queries"][name]),
            "engine_sql_ms_large": sql_ms(phases["large"]["queries"][name]),
        }
    return {
        "views": paths,
        "phases": phases,
        "ratios": ratios,
        "trigram_indexes": trigram,
        "target_ratio": TARGET_RATIO,
        "uvicorn": " ".join(["uvicorn", *server.argv[3:]]),
    }


def sql_ms(entry: dict[str, Any]) -> float:
    """EXPLAIN ANALYZE execution time of a page's queries on the job and batch tables."""
    return round(sum(q["execution_ms"] or 0 for q in entry["engine_table_queries"]), 1)


def admin_findings(admin: dict[str, Any]) -> list[str]:
    """Why a view is more than 2x slower at the large size, from its plans and row counts."""
    findings = []
    for name, r in admin["ratios"].items():
        if r["within_2x"]:
            continue
        queries = admin["phases"]["large"]["queries"][name]["engine_table_queries"]
        scans = [q for q in queries if any("Seq Scan on orchestration_marketplacejob" in line
                                           for line in q.get("plan", []))]  # fmt: skip
        if scans:
            scan_ms = round(sum(q["execution_ms"] or 0 for q in scans), 1)
            findings.append(
                f"{name}: {len(scans)} sequential scan(s) of the job table at "
                f"{admin['phases']['large']['fill']['rows']:,} rows ({scan_ms} ms of "
                f"{r['engine_sql_ms_large']} ms SQL); trigram indexes: "
                f"{', '.join(admin['trigram_indexes']) or 'none (pg_trgm not available)'}"
            )
        elif r["rows_shown_small"] != r["rows_shown_large"]:
            findings.append(
                f"{name}: {r['rows_shown_small']} rows shown at the small size, "
                f"{r['rows_shown_large']} at the large one; SQL {r['engine_sql_ms_small']} -> "
                f"{r['engine_sql_ms_large']} ms: the difference is rendering more rows"
            )
        else:
            findings.append(
                f"{name}: SQL {r['engine_sql_ms_small']} -> {r['engine_sql_ms_large']} ms "
                f"of {r['small_ms']} -> {r['large_ms']} ms (see its plans)"
            )
    return findings
