"""The dependency audit (scripts/audit_dependencies.py, run by ``make check``) against a
local OSV-compatible service: the real ``uv audit`` over the real lock file, over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.marketplaces.support import free_port

BASE_DIR = Path(__file__).resolve().parents[3]
ADVISORY = {
    "id": "GHSA-test-h77p-0001",
    "modified": "2026-01-01T00:00:00Z",
    "summary": "A test advisory against the locked httpx",
    "affected": [
        {
            "package": {"name": "httpx", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}],
        }
    ],
}


def osv_answers(local_server, vulnerable: set[str]) -> None:
    """Our LocalServer answers fixed bodies per path: a batch answer for the lock file's
    packages in order (read from uv.lock the way uv lists them: sorted by name)."""
    import tomllib

    lock = tomllib.loads((BASE_DIR / "uv.lock").read_text())
    names = sorted(p["name"] for p in lock["package"] if p.get("source", {}).get("editable") != ".")
    results = [
        {"vulns": [{"id": ADVISORY["id"], "modified": ADVISORY["modified"]}]}
        if name in vulnerable
        else {}
        for name in names
    ]
    body = json.dumps({"results": results}).encode()
    local_server.routes["/v1/querybatch"] = (200, {"Content-Type": "application/json"}, body)
    local_server.routes[f"/v1/vulns/{ADVISORY['id']}"] = (
        200,
        {"Content-Type": "application/json"},
        json.dumps(ADVISORY).encode(),
    )


def audit(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/audit_dependencies.py"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("vulnerable", [{"httpx"}, set()], ids=["vulnerable", "clean"])
def test_a_known_vulnerability_fails_the_audit(local_server, vulnerable):
    osv_answers(local_server, vulnerable)
    result = audit(AUDIT_SERVICE_URL=local_server.origin)
    if vulnerable:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "httpx" in result.stdout and ADVISORY["id"] in result.stdout
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    assert "/v1/querybatch" in local_server.hits


def test_an_unreachable_service_skips_loudly_unless_required():
    dead = f"http://127.0.0.1:{free_port()}"
    skipped = audit(AUDIT_SERVICE_URL=dead, UV_HTTP_RETRIES="0")
    assert skipped.returncode == 0
    assert "dependency audit SKIPPED" in skipped.stderr
    required = audit(AUDIT_SERVICE_URL=dead, AUDIT_REQUIRED="1", UV_HTTP_RETRIES="0")
    assert required.returncode == 2
    assert "dependency audit FAILED" in required.stderr
