"""``bench/results/SUMMARY.md`` and PNG charts from the JSON files the benchmarks wrote.

Run by ``make bench`` (``bench/run_all.py``) after the benchmarks, or on its own:

    .venv/bin/python -m bench.report

Every figure is written next to its peer or target and the command that reruns it. A
benchmark that did not run (or failed) keeps its previous JSON: its timestamp says when it
was measured. Not a benchmark itself (no ``main()``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import RESULTS_DIR, machine_summary, save_chart
from bench.live_admin import report as live_report
from bench.scaling import report as scaling_report

SUMMARY = RESULTS_DIR / "SUMMARY.md"


def load() -> dict[str, dict[str, Any]]:
    results = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"  report: skipped {path.name}: {exc}", file=sys.stderr)
    return results


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


# --- charts ----------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_throughput(et: dict[str, Any]) -> str | None:
    s = et.get("summary") or {}
    systems = [
        ("engine\n(steps/s)", s.get("engine_steps_per_s"), s.get("rounds_engine_steps_per_s")),
        ("django-q2\n(tasks/s)", s.get("q2_tasks_per_s"), s.get("rounds_q2_tasks_per_s")),
        (
            "procrastinate\n(jobs/s)",
            s.get("procrastinate_tasks_per_s"),
            s.get("rounds_procrastinate_tasks_per_s"),
        ),
    ]
    for label, variant in (et.get("engine_variants") or {}).items():
        systems.append(
            (f"engine\n{label}", variant.get("median"), variant.get("steps_per_s_steady_rounds"))
        )
    systems = [x for x in systems if x[1]]
    if not systems:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [x[0] for x in systems]
    ax.bar(names, [x[1] for x in systems], color="#4c78a8")
    for i, (_, _, rounds) in enumerate(systems):
        if rounds:
            ax.scatter([i] * len(rounds), rounds, color="black", s=12, zorder=3)
    ceiling = s.get("pgbench_ceiling_tps")
    if ceiling:
        ax.axhline(
            ceiling, color="#e45756", linestyle="--", label=f"pgbench ceiling {ceiling:,.0f} tps"
        )
    best = max((x[1] for x in systems[1:3] if x[1]), default=None)
    if best:
        ax.axhline(
            3 * best, color="#54a24b", linestyle=":", label=f"target 3x best peer = {3 * best:,.0f}"
        )
    ax.set_ylabel("per second (steady window; bars = median, dots = rounds)")
    durable = "durable commits" if s.get("durable_commits") else "synchronous_commit=off"
    ax.set_title(f"Throughput, {durable}, {(et.get('settings') or {}).get('workers')} workers")
    ax.legend(fontsize=8)
    return save_chart(plt, fig, "throughput.png")


def chart_usage(et: dict[str, Any]) -> str | None:
    rows = []
    for label, key, unit in (
        ("engine step", "engine", "step"),
        ("django-q2 task", "raw_q2", "task"),
        ("procrastinate job", "procrastinate", "task"),
    ):
        usage = (et.get(key) or {}).get(f"usage_per_{unit}")
        if usage and usage.get("worker_cpu_us") is not None:
            rows.append((label, usage["worker_cpu_us"], usage.get("backend_cpu_us") or 0))
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r[0] for r in rows]
    ax.bar(names, [r[1] for r in rows], label="worker processes (Python)", color="#4c78a8")
    ax.bar(
        names,
        [r[2] for r in rows],
        bottom=[r[1] for r in rows],
        label="PostgreSQL backends",
        color="#f58518",
    )
    ax.set_ylabel("CPU µs per unit of work")
    ax.set_title("Where the CPU goes (steady window)")
    ax.legend(fontsize=8)
    return save_chart(plt, fig, "cpu_per_unit.png")


def chart_rate_curve(et: dict[str, Any]) -> str | None:
    curve = et.get("rate_curve")
    if not curve or not curve.get("starts_per_second"):
        return None
    plt = _plt()
    per_second = curve["starts_per_second"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(
        range(len(per_second)),
        per_second,
        width=0.9,
        color="#4c78a8",
        label="starts in that second",
    )
    cumulative, total = [], 0
    for n in per_second:
        total += n
        cumulative.append(total)
    ax2 = ax.twinx()
    ax2.plot(range(len(per_second)), cumulative, color="#e45756", label="cumulative")
    ax2.plot(range(len(per_second)), [curve["rate_per_minute"] / 60 * (i + 1) for i in range(len(per_second))],
             color="grey", linestyle=":", label="even pace")  # fmt: skip
    ax.set_xlabel("seconds since the first start")
    ax.set_ylabel("starts per second")
    ax2.set_ylabel("cumulative starts")
    ax.set_title(f"A {curve['rate_per_minute']}/min resource under a real cluster")
    fig.legend(fontsize=8, loc="upper left")
    return save_chart(plt, fig, "rate_curve.png")


# --- SUMMARY.md ---------------------------------------------------------------------------------


def _cpu_share(et: dict[str, Any], s: dict[str, Any], best: str | None) -> list[str]:
    """The engine's CPU per step as a share of the best peer's per unit, and the ratios of
    each round's pair: what the ratio follows on a machine whose CPUs are the limit."""
    peer_key = {"procrastinate": "procrastinate", "django-q2": "raw_q2"}.get(best or "")
    engine = (et.get("engine") or {}).get("usage_per_step") or {}
    peer = (et.get(peer_key) or {}).get("usage_per_task") or {} if peer_key else {}
    engine_cpu = (engine.get("worker_cpu_us") or 0) + (engine.get("backend_cpu_us") or 0)
    peer_cpu = (peer.get("worker_cpu_us") or 0) + (peer.get("backend_cpu_us") or 0)
    lines: list[str] = []
    if engine_cpu and peer_cpu:
        lines += [
            "",
            f"The engine's worker + PostgreSQL CPU per step is **{engine_cpu / peer_cpu:.2f}** of "
            f"{best}'s per job ({_fmt(engine_cpu)} against {_fmt(peer_cpu)} µs): on a machine whose "
            "CPUs are the limit the ratio follows its inverse, so a ratio of 3 needs 0.33 or less.",
        ]
    rounds_key = {"procrastinate": "rounds_procrastinate_tasks_per_s",
                  "django-q2": "rounds_q2_tasks_per_s"}.get(best or "")  # fmt: skip
    engine_rounds = s.get("rounds_engine_steps_per_s") or []
    peer_rounds = s.get(rounds_key) or [] if rounds_key else []
    if engine_rounds and len(engine_rounds) == len(peer_rounds):
        pairs = [round(e / p, 2) for e, p in zip(engine_rounds, peer_rounds, strict=True) if p]
        lines += ["", f"Each round's engine ÷ {best} (alternating pairs): {pairs}."]
    return lines


def section_throughput(et: dict[str, Any], charts: list[str]) -> list[str]:
    s = et.get("summary") or {}
    m = et.get("machine") or {}
    ceiling = s.get("pgbench_ceiling_tps")
    frac = s.get("fraction_of_ceiling") or {}
    best = s.get("best_peer")
    lines = [
        "## Throughput against peers (`engine_throughput`)",
        "",
        f"Measured {et.get('timestamp')} on commit `{((et.get('git') or {}).get('commit') or '?')[:10]}`; "
        f"{machine_summary(m)} (other work on the machine competes: absolute figures "
        "move, ratios from alternating rounds less so). Worker commits durable: "
        f"**{s.get('durable_commits')}**; every system reaches the database by "
        f"{(et.get('database') or {}).get('transport', 'tcp')}. Rerun: `{et.get('command')}`.",
        "",
        "| system | per second (median) | rounds | fraction of pgbench ceiling | vs target |",
        "| --- | --- | --- | --- | --- |",
        f"| engine, 5-step no-op jobs (steps) | {_fmt(s.get('engine_steps_per_s'))} | "
        f"{s.get('rounds_engine_steps_per_s')} | {_fmt(frac.get('engine_steps'), 2)} | "
        f"ratio to best peer ({best}) **{_fmt(s.get('ratio_vs_best_peer'), 2)}**, target ≥ 3.0: "
        f"{'met' if s.get('target_met') else '**not met**'} |",
        f"| django-q2 no-op tasks | {_fmt(s.get('q2_tasks_per_s'))} | {s.get('rounds_q2_tasks_per_s')} | "
        f"{_fmt(frac.get('django-q2'), 2)} | peer |",
        f"| procrastinate no-op jobs | {_fmt(s.get('procrastinate_tasks_per_s'))} | "
        f"{s.get('rounds_procrastinate_tasks_per_s')} | {_fmt(frac.get('procrastinate'), 2)} | peer |",
        f"| pgbench single-row UPDATE, durable | {_fmt(ceiling)} tps | "
        f"{(et.get('pgbench_ceiling') or {}).get('rounds_tps')} | 1.00 | the server's ceiling at this concurrency |",
    ]
    nd = ((et.get("pgbench_ceiling") or {}).get("synchronous_commit_off") or {}).get("tps")
    if nd:
        lines.append(
            f"| pgbench, `synchronous_commit=off` | {_fmt(nd)} tps | | | reference (not durable) |"
        )
    for label, v in (et.get("engine_variants") or {}).items():
        lines.append(
            f"| engine with `ORCHESTRATION_{label}` | {_fmt(v.get('median'))} | "
            f"{v.get('steps_per_s_steady_rounds')} | | what the setting buys (same rounds) |"
        )
    lines += ["", "Where the time goes, per unit of work, steady window (from `usage_per_*`):", ""]
    lines += [
        "| unit | worker CPU µs | PostgreSQL backend CPU µs | commits (incl. read-only) | WAL flushes (server-wide) | WAL bytes (server-wide) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, key, unit in (("engine step", "engine", "step"), ("django-q2 task", "raw_q2", "task"),
                             ("procrastinate job", "procrastinate", "task")):  # fmt: skip
        u = (et.get(key) or {}).get(f"usage_per_{unit}")
        if u:
            lines.append(
                f"| {label} | {_fmt(u.get('worker_cpu_us'))} | {_fmt(u.get('backend_cpu_us'))} | "
                f"{_fmt(u.get('commits'), 2)} | {_fmt(u.get('wal_syncs_server_wide'), 2)} | "
                f"{_fmt(u.get('wal_bytes_server_wide'))} |"
            )
    lines += _cpu_share(et, s, best)
    curve = et.get("rate_curve")
    if curve:
        lines += [
            "",
            f"Rate-limited resource ({curve['rate_per_minute']}/min, real cluster, {curve['seconds']} s): "
            f"{curve['starts']} starts, at most {curve['max_starts_in_1s']} in any second and "
            f"{curve['max_starts_in_10s']} in any 10 s, median gap {curve['median_gap_s']} s, longest "
            f"gap {curve['longest_gap_s']} s (target: about one a second; before issue 17 a minute's "
            "worth started at once, then ~54 s idle).",
        ]
    lines += [""] + [f"![{c}]({c})" for c in charts] + [""]
    return lines


def section_generic(name: str, data: dict[str, Any]) -> list[str]:
    when = data.get("timestamp") or data.get("when") or data.get("at") or data.get("started_at")
    lines = [
        f"## `{name}`",
        "",
        f"Measured {when}. Rerun: `{data.get('command') or f'.venv/bin/python -m bench.{name}'}`.",
        "",
    ]
    summary = data.get("summary")
    if summary is None:
        summary = {
            k: data[k]
            for k in ("target", "backlog", "latency", "assembly", "settings", "request", "worker")
            if k in data
        }
    text = json.dumps(summary, indent=1, default=str)
    if len(text) > 2500:
        text = text[:2500] + "\n… (see the JSON file)"
    lines += ["```json", text, "```", ""]
    return lines


def write_report() -> Path:
    results = load()
    lines = [
        "# Benchmark summary",
        "",
        "Written by `make bench` (`bench/report.py`) from `bench/results/*.json`; how each figure",
        "is measured: `bench/README.md` and `docs/benchmarks.md`. Nothing here is a test.",
        "",
    ]
    et = results.get("engine_throughput")
    if et:
        charts = [c for c in (chart_throughput(et), chart_usage(et), chart_rate_curve(et)) if c]
        lines += section_throughput(et, charts)
    live = results.get("live_admin")
    if live:
        lines += live_report.section(live, live_report.chart(live, _plt()))
    scaling = results.get("scaling")
    if scaling:
        lines += scaling_report.section(scaling, scaling_report.chart(scaling, _plt()))
    for name, data in results.items():
        if name in ("engine_throughput", "live_admin", "scaling"):
            continue
        lines += section_generic(name, data)
    SUMMARY.write_text("\n".join(lines))
    return SUMMARY


if __name__ == "__main__":
    print(f"  wrote {write_report()}")
