"""Run every benchmark in ``bench/`` (each module or package exposing ``main()``), one process each.

Each benchmark sets Django up against its own throw-away database, so each one runs in
a fresh interpreter (``python -m bench.<name>``). Extra arguments are passed to every
benchmark. Exit status: non-zero if any benchmark failed.

    .venv/bin/python -m bench.run_all
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import time

import bench
from bench.harness import BASE_DIR

# The fault suite is not a benchmark: `make chaos` runs it on its own.
NOT_BENCHMARKS = {
    "harness",
    "run_all",
    "chaos",
    "report",  # SUMMARY.md and charts, written after the benchmarks
}


def benchmarks() -> list[str]:
    names = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name in NOT_BENCHMARKS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")  # no Django at import time
        # a package (``python -m bench.<name>`` runs its ``__main__``) exports ``main`` too
        if callable(getattr(module, "main", None)):
            names.append(info.name)
    return names


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    names = benchmarks()
    print(f"benchmarks: {', '.join(names) or '(none)'}")
    failed = []
    for name in names:
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra], cwd=BASE_DIR)
        print(f"[{name}] exit {code} after {time.perf_counter() - started:.0f}s\n")
        if code != 0:
            failed.append(name)
    from bench.report import write_report

    try:
        print(f"summary: {write_report()}")
    except Exception as exc:  # the figures are written; a chart failing must not hide them
        print(f"report failed: {exc!r}", file=sys.stderr)
        failed.append("report")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
