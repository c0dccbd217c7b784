"""Facts about a run (machine, git, versions, time) and its JSON file under ``bench/results/``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness.base import BASE_DIR, RESULTS_DIR, BenchError


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    info["loadavg_at_start"] = loadavg()
    info["python_loop_s_per_10m"] = cpu_speed()
    return info


def cpu_speed(iterations: int = 2_000_000) -> float:
    """Seconds a 10-million-step loop of Python additions takes here, inside a function
    (the best of three shorter loops).

    This VM's speed moves by up to 2x between days (its share of the host changes), so rates
    from different runs are only comparable next to this figure.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 10_000_000 / iterations, 2)


def machine_summary(machine: Mapping[str, Any]) -> str:
    """The machine part of a report's "Measured" line: 2 CPUs (a 10-million-step Python
    loop: 0.46 s), load average [..] at start, [..] at end (older results have no loop)."""
    speed = machine.get("python_loop_s_per_10m")
    loop = f" (a 10-million-step Python loop: {speed} s)" if speed else ""
    return (
        f"{machine.get('cpu_count')} CPUs{loop}, load average {machine.get('loadavg_at_start')}"
        f" at start, {machine.get('loadavg_at_end')} at end"
    )


def loadavg() -> list[float] | None:
    """1/5/15-minute load: other work on the machine competes with the benchmark."""
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def git_state() -> dict[str, Any]:
    """The commit measured, and files changed but not committed outside ``bench/`` (they
    are measured too: the working tree is what runs)."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return proc.stdout if proc.returncode == 0 else ""

    commit = git("rev-parse", "HEAD").strip()
    if not commit:
        return {"commit": None}
    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
        if line[3:] and not line[3:].startswith("bench/")
    ]
    return {"commit": commit, "uncommitted_changes": changed}


def package_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "?"
    return versions


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (via a git-ignored ``.tmp`` file, then rename)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def measured_lines(result: Mapping[str, Any], path: Path, *, took: bool = False) -> list[str]:
    """The closing lines of a benchmark's summary: the commit measured, where the JSON went
    (and how long the run took, with ``took``) and the command that reruns it."""
    lines = []
    git = result.get("git") or {}
    if git.get("commit"):
        dirty = git.get("uncommitted_changes") or []
        lines.append(
            f"  measured: commit {git['commit'][:10]}"
            + (f" + {len(dirty)} uncommitted files outside bench/" if dirty else "")
        )
    written = f"written to {path}"
    if took:
        written = f"took {result['duration_s']}s; {written}"
    return [*lines, f"  {written}", f"  rerun: {result['command']}"]


def run_cli(main: Callable[[], Any], name: str) -> None:
    """``python -m bench.<name>``: run ``main()``; a ``BenchError`` is one line and exit 1."""
    try:
        main()
    except BenchError as exc:
        print(f"\n[{name}] failed: {exc}", file=sys.stderr)
        sys.exit(1)


def finish_result(name: str, result: dict[str, Any], *, started: float | None = None) -> Path:
    """Record the run's duration (since ``started``, a ``perf_counter``) and the load at its
    end, then write the JSON file."""
    if started is not None:
        result["duration_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_at_end"] = loadavg()
    return write_result(name, result)


def save_chart(plt, fig, filename: str) -> str:
    """Lay out ``fig``, write it to ``bench/results/<filename>`` (110 dpi), close it; returns
    the file name (what SUMMARY.md links)."""
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / filename, dpi=110)
    plt.close(fig)
    return filename
