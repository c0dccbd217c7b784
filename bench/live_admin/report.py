"""The live latency section of ``bench/results/SUMMARY.md`` and its chart (``bench/report.py``)."""

from __future__ import annotations

from typing import Any

from bench.harness import machine_summary, save_chart


def chart(live: dict[str, Any], plt) -> str | None:
    s = live.get("summary") or {}
    runs = {**(s.get("live") or {}), **(s.get("live_under_load") or {})}
    rows = [(name, d.get("commit_to_dom_ms") or {}, d) for name, d in runs.items()]
    rows = [r for r in rows if r[1].get("p50") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(rows)), 4))
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        ax.bar([j + i * width for j in range(len(rows))], [r[1][q] for r in rows], width, label=q)
    names = []
    for name, _, d in rows:
        rate = (d.get("load") or {}).get("all_steps_per_s")
        names.append(name.replace("+", "\n+") + (f"\n{rate:,.0f} steps/s" if rate else ""))
    ax.set_xticks([j + width for j in range(len(rows))], names, fontsize=8)
    ax.axhline(100, color="#e45756", linestyle="--", label="target p95 100 ms")
    ax.set_ylabel("step commit -> browser DOM (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return save_chart(plt, fig, "latency.png")


def section(live: dict[str, Any], chart_name: str | None) -> list[str]:
    s = live.get("summary") or {}
    m = live.get("machine") or {}
    lines = [
        "## Live latency (`live_admin`)",
        "",
        f"Measured {live.get('timestamp')}; {machine_summary(m)}; "
        f"database reached by {(live.get('database') or {}).get('transport', 'tcp')}; "
        "pages ask for reduced motion: "
        f"{(live.get('settings') or {}).get('browser_reduced_motion', False)}. "
        f"Rerun: `{live.get('command')}`.",
        "",
        "Step commit → browser DOM (ms) for the watched batch "
        f"({(live.get('settings') or {}).get('jobs')} jobs, 5 steps of "
        f"{(live.get('settings') or {}).get('step_sleep_ms')} ms), alone and while no-op load "
        "jobs run in a second tenant; steps/s = every step committed in the observed window "
        "(first watched job started → watched batch completed). Commit = the message's "
        "`committed` (the worker's clock right after its transaction committed); state "
        "timestamp = the job's `started_at` / `completed_at`, set inside the transaction "
        "(`started_at` at the claim's start), the figure reported before session 12.",
        "",
        "| run | workers | CPU pressure % | steps/s in window (min 1-s) | commit → DOM p50 / p95 / p99 | "
        "state timestamp → DOM p50 / p95 | commit → WebSocket p50 / p95 | every message: emit → "
        "commit p95; commit → layer p50 / p95, layer → page "
        "p50 / p95 (of which layer → uvicorn's socket p95, socket → page p95) | WebSocket → DOM "
        "p95 | samples | p95 ≤ 100 ms | "
        "≥ 1,000 steps/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    runs = {**(s.get("live") or {}), **(s.get("live_under_load") or {})}
    for name, d in runs.items():
        c = d.get("commit_to_dom_ms") or {}
        w = d.get("commit_to_ws_ms_all") or {}
        st = d.get("state_to_dom_ms_all") or {}
        ec = d.get("emit_to_commit_ms_all") or {}
        el = d.get("commit_to_layer_ms_all") or {}
        lp = d.get("layer_to_page_ms_all") or {}
        load = d.get("load") or {}
        rate = (
            f"{load.get('all_steps_per_s')} ({load.get('min_1s_bucket')})"
            + ("" if load.get("load_covered_window", True) else ", load ended early")
            if load
            else "its own batch only"
        )
        lines.append(
            f"| {name} | {d.get('workers') or '-'} | {d.get('cpu_pressure_pct')} | {rate} | {c.get('p50')} / {c.get('p95')} / "
            f"{c.get('p99')} | {st.get('p50')} / {st.get('p95')} | {w.get('p50')} / {w.get('p95')} | "
            f"{ec.get('p95')}; {el.get('p50')} / {el.get('p95')}, "
            f"{lp.get('p50')} / {lp.get('p95')} ({(d.get('layer_to_socket_ms_all') or {}).get('p95')}, "
            f"{(d.get('socket_to_page_ms_all') or {}).get('p95')}) | "
            f"{(d.get('ws_to_dom_ms_all') or {}).get('p95')} | {c.get('count')} | "
            f"{'met' if d.get('p95_within_100ms') else '**not met**'} | "
            f"{('yes' if load.get('target_reached') else '**no**') if load else '-'} |"
        )
    lines.append("")
    if chart_name:
        lines += [f"![{chart_name}]({chart_name})", ""]
    return lines
