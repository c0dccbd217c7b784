"""CPU pressure (Linux PSI, ``/proc/pressure/cpu``): how much of a window some runnable task
waited for a CPU. On a shared 2-CPU machine this, not the code measured, can be what a
latency figure is made of; benchmarks record it beside their figures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

PSI_CPU = Path("/proc/pressure/cpu")


def cpu_pressure() -> dict[str, Any] | None:
    """``some`` line: avg10/avg60/avg300 (% of time) and total (µs), with a monotonic stamp."""
    try:
        line = next(x for x in PSI_CPU.read_text().splitlines() if x.startswith("some"))
    except (OSError, StopIteration):
        return None
    fields = dict(part.split("=") for part in line.split()[1:])
    return {
        "avg10": float(fields["avg10"]),
        "avg60": float(fields["avg60"]),
        "total_us": int(fields["total"]),
        "t": time.monotonic(),
    }


def cpu_pressure_between(start: dict[str, Any] | None, end: dict[str, Any] | None) -> float | None:
    """Share (%) of the time between two readings during which some task waited for a CPU."""
    if not start or not end or end["t"] <= start["t"]:
        return None
    return round(100 * (end["total_us"] - start["total_us"]) / 1e6 / (end["t"] - start["t"]), 1)
