"""Reads in the public schema: every tenant's job counts (numbers only) for the platform
roll-up, and every worker cluster's health (``/healthz/workers``, ``workers_health``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from orchestration.models import MarketplaceJob
from orchestration.states import JobStatus
from tenants.models import WorkerCluster


def tenant_rollup(schemas: list[str], *, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Waiting, running and failed-in-24h job counts per tenant schema, in one query.

    Reads each schema's job table by qualified name (no search_path switching); schemas
    whose table does not exist (yet) are left out.
    """
    from django.db import connection

    if not schemas:
        return {}
    now = now or timezone.now()
    table = MarketplaceJob._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s FROM unnest(%s::text[]) AS s WHERE to_regclass(quote_ident(s) || '.' || %s) IS NOT NULL",
            [schemas, table],
        )
        present = [row[0] for row in cursor.fetchall()]
        if not present:
            return {}
        parts, params = [], []
        for schema in present:
            qualified = f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(table)}"
            parts.append(
                f"SELECT %s, (SELECT count(*) FROM {qualified} WHERE status IN (%s, %s)),"
                f" (SELECT count(*) FROM {qualified} WHERE status = %s),"
                f" (SELECT count(*) FROM {qualified} WHERE status = %s AND completed_at >= %s)"
            )
            params += [schema, JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING,
                       JobStatus.FAILED, now - timedelta(hours=24)]  # fmt: skip
        cursor.execute(" UNION ALL ".join(parts), params)
        return {
            schema: {"waiting": waiting, "running": running, "failed_24h": failed}
            for schema, waiting, running, failed in cursor.fetchall()
        }


# --- worker clusters (public: every watchdog's row) ----------------------------------------

HEARTBEAT_STALE_SECONDS = 15  # a watchdog ticks every second: 15 s of silence = gone


def cluster_health(*, now: datetime | None = None) -> dict[str, Any]:
    """Every worker cluster run by a watchdog (``manage.py run_workers``): alive, last
    progress, ready work waiting, restarts in the last hour, and a verdict with its reason.

    ``ok`` is False when no cluster is alive, or one is stalled or restarting, or a live
    one's watchdog stopped ticking: what ``/healthz/workers`` and ``workers_health``
    answer non-zero for.
    """
    now = now or timezone.now()
    hour_ago = now - timedelta(hours=1)
    rows = []
    clusters = list(
        WorkerCluster.objects.filter(heartbeat_at__gte=hour_ago).exclude(
            state="stopped", stopped_at__lt=hour_ago
        )
    )
    for cluster in clusters:
        beat_age = (now - cluster.heartbeat_at).total_seconds()
        restarts = [t for t in cluster.restart_times if datetime.fromisoformat(t) >= hour_ago]
        stopped = cluster.state == "stopped"
        alive = not stopped and beat_age <= HEARTBEAT_STALE_SECONDS
        replaced = any(
            other.host == cluster.host and other.started_at > cluster.heartbeat_at
            for other in clusters
        )
        if stopped:
            verdict, reason = "stopped", "stopped by its operator"
        elif not alive and replaced:
            verdict, reason = "replaced", "its watchdog died; a newer one runs on this host"
        elif not alive:
            verdict, reason = "down", f"its watchdog has not reported for {beat_age:.0f}s"
        elif cluster.state in ("stalled", "restarting"):
            verdict, reason = cluster.state, cluster.reason
        else:
            verdict, reason = "ok", ""
        progress = cluster.last_progress_at
        rows.append({
            "name": cluster.name, "host": cluster.host, "workers": cluster.workers,
            "state": cluster.state, "verdict": verdict, "reason": reason, "alive": alive,
            "cluster_pid": cluster.cluster_pid, "heartbeat_seconds": round(beat_age, 1),
            "last_progress_at": progress,
            "progress_seconds": round((now - progress).total_seconds(), 1) if progress else None,
            "ready_waiting": cluster.ready_waiting, "restarts_last_hour": len(restarts),
            "last_restart_reason": cluster.reason if restarts else "",
            "last_sweep_at": cluster.last_sweep_at,
        })  # fmt: skip
    live = [r for r in rows if r["alive"]]
    problems = [r for r in rows if r["verdict"] in ("down", "stalled", "restarting")]
    return {
        "ok": bool(live) and not problems,
        "clusters": rows,
        "problems": [f"{r['name']}: {r['verdict']} ({r['reason']})" for r in problems]
        or ([] if live else ["no worker cluster is running (start manage.py run_workers)"]),
    }
