"""The result: the JSON document, the table (also in docs/reliability.md) and the printed summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos.cli import command_line
from bench.chaos.constants import BEGIN, DOCS, END, KILL_WEIGHTS, NAME
from bench.chaos.findings import findings


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
        f"{BEGIN}\n<!-- generated by `make chaos` (bench/chaos/); edits here are overwritten -->\n\n"
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
