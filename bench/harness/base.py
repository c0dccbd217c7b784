"""Where the benchmarks live and how they fail: paths, ``BenchError``, SIGTERM as an exit."""

from __future__ import annotations

import signal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
RESULTS_DIR = BASE_DIR / "bench" / "results"


class BenchError(RuntimeError):
    """A benchmark could not produce a figure (setup failed, cluster died, liveness timeout)."""


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (stop cluster, drop database) run."""

    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
