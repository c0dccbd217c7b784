"""Dependency audit: every package locked in uv.lock against known vulnerabilities.

Runs ``uv audit`` (uv's own auditor, the equivalent of pip-audit over the lock file: it
queries the OSV database, which includes PyPI's advisories). ``make check`` runs it.

Exit status:
  0  no known vulnerability, or the vulnerability service could not be reached and
     ``AUDIT_REQUIRED`` is not set (a loud "SKIPPED" line says so: an outage of the
     service must not make every build red; see docs/security.md)
  1  a locked package has a known vulnerability (the report names it and the fix)
  2  the service could not be reached and ``AUDIT_REQUIRED=1``

Environment: ``AUDIT_SERVICE_URL`` (an OSV-compatible API, e.g. a mirror),
``AUDIT_IGNORE`` (comma-separated advisory ids accepted for now, each with a reason in
docs/security.md), ``AUDIT_REQUIRED=1`` (fail when the service is unreachable).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
UV = BASE_DIR / ".tools" / "bin" / "uv"


def main() -> int:
    uv = str(UV) if UV.exists() else "uv"
    command = [uv, "audit", "--frozen", "--preview-features", "audit-command"]
    if os.environ.get("AUDIT_SERVICE_URL"):
        command += ["--service-url", os.environ["AUDIT_SERVICE_URL"]]
    for advisory in filter(None, os.environ.get("AUDIT_IGNORE", "").split(",")):
        command += ["--ignore", advisory.strip()]
    try:
        result = subprocess.run(
            command, cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return unreachable(f"{type(exc).__name__}: {exc}")
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        print(f"dependency audit: {last_line(output) or 'no known vulnerability'}")
        return 0
    if result.returncode == 1 and "vulnerabilit" in output.lower():
        print(output)
        print("dependency audit FAILED: upgrade the packages above (uv lock --upgrade-package …)")
        return 1
    return unreachable(output)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and "experimental" not in line]
    return lines[0] if lines else ""


def unreachable(detail: str) -> int:
    reason = " / ".join(
        line.strip().removeprefix("cause: ")
        for line in detail.splitlines()
        if line.strip().startswith(("error:", "cause:"))
    )
    required = os.environ.get("AUDIT_REQUIRED", "").lower() in ("1", "true", "yes")
    verdict = "FAILED" if required else "SKIPPED"
    print(
        f"dependency audit {verdict}: the vulnerability service could not be reached "
        f"({reason or detail[-300:]}). Nothing was checked."
        + ("" if required else " Set AUDIT_REQUIRED=1 to make this an error."),
        file=sys.stderr,
    )
    return 2 if required else 0


if __name__ == "__main__":
    sys.exit(main())
