"""The scaling section of ``bench/results/SUMMARY.md`` and its chart (``bench/report.py``)."""

from __future__ import annotations

from typing import Any

from bench.harness import machine_summary, save_chart


def chart(sc: dict[str, Any], plt) -> str | None:
    s = sc.get("summary") or {}
    groups = [
        ("workers (one cluster)", s.get("workers_steps_per_s") or {}),
        ("clusters", s.get("clusters_steps_per_s") or {}),
        ("tenants", s.get("tenants_steps_per_s") or {}),
    ]
    groups = [(title, values) for title, values in groups if values]
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 4), sharey=True)
    axes = axes if len(groups) > 1 else [axes]
    for ax, (title, values) in zip(axes, groups, strict=True):
        names = [k.replace(" + ", "\n+ ") for k in values]
        ax.bar(names, [v or 0 for v in values.values()], color="#4c78a8")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_ylabel("engine steps/s (steady window)")
    return save_chart(plt, fig, "scaling.png")


def section(sc: dict[str, Any], chart_name: str | None) -> list[str]:
    s = sc.get("summary") or {}
    m = sc.get("machine") or {}
    lines = [
        "## Scaling (`scaling`)",
        "",
        f"Measured {sc.get('timestamp')}; {machine_summary(m)}; durable "
        f"commits: **{s.get('durable_commits')}**. Rerun: `{sc.get('command')}`. "
        "5-step no-op jobs, steady steps/s from `JobRun` timestamps; each configuration "
        "runs `--rounds` times, alternating with the others, and the median is shown (the "
        "1,000-busy run: once).",
        "",
        "| configuration | steps/s (median) | rounds | vs reference | runs per cluster | load "
        "average at start | CPU pressure % (these three: the median round) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    workers = sc.get("workers") or {}
    for n, r in workers.items():
        lines.append(
            f"| {n} worker(s), one cluster | {r.get('steps_per_s_steady')} | {r.get('rounds', '')} | "
            f"x{(s.get('workers_speedup_vs_fewest') or {}).get(n)} of the fewest | - | "
            f"{r.get('loadavg_start')} | {r.get('cpu_pressure_pct')} |"
        )
    for k, r in (sc.get("clusters") or {}).items():
        lines.append(
            f"| clusters {k} | {r.get('steps_per_s_steady')} | {r.get('rounds', '')} | | "
            f"{r.get('runs_per_cluster')} | "
            f"{r.get('loadavg_start')} | {r.get('cpu_pressure_pct')} |"
        )
    for k, r in (sc.get("tenants") or {}).items():
        lines.append(
            f"| tenants: {k} | {r.get('steps_per_s_steady')} | {r.get('rounds', '')} | | - | "
            f"{r.get('loadavg_start')} | "
            f"{r.get('cpu_pressure_pct')} |"
        )
    lines += [
        "",
        f"Second cluster: x{s.get('second_cluster_gain_orm')} with the ORM broker, "
        f"x{s.get('second_cluster_gain_redis')} with Redis, on no-op steps that keep this "
        f"machine's CPUs busy; x{s.get('second_cluster_gain_wait')} on steps that wait 20 ms "
        "(`wait` rows: a marketplace call's latency, little CPU; target: adding a machine "
        f"adds capacity). 1,000 idle tenants: x{s.get('idle_tenants_cost')} of the tenant alone "
        "(target: x1, idle tenants cost nothing); every tenant busy: "
        f"x{s.get('busy_tenants_vs_alone')} of the tenant alone. The watchdog's slow sweep "
        f"pass (every 15 s) with those tenants idle: {s.get('sweep_slow_pass_s')} s, visiting "
        "the `SWEEP_TENANTS` least recently visited; "
        f"{s.get('sweep_slow_pass_all_tenants_s')} s visiting every tenant (before the slice).",
        "",
    ]
    if chart_name:
        lines += [f"![{chart_name}]({chart_name})", ""]
    return lines
