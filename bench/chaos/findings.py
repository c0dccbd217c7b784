"""Defects and observations: what the run shows wrong or worth knowing, with its evidence."""

from __future__ import annotations

from typing import Any

from bench.chaos.constants import LEASE_SECONDS


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
