"""What every scenario reports: how its jobs settled, runs per job, gaps between steps, the watchdog's restarts."""

from __future__ import annotations

import contextlib
import itertools
import re
from collections import Counter
from typing import Any

from bench import harness
from bench.chaos.procs import Workers


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
