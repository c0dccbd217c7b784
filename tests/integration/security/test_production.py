"""Production mode (DJANGO_ENV=production), checked in subprocesses with that environment:
required settings fail clearly, ``check --deploy`` is clean, no diagnostic socket; and the
Content Security Policy with no inline script, checked on the pages themselves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[3]
SECRET = "p" + "Qx7-Lm2_Zr9" * 6  # 67 characters, as random as check --deploy wants


def run(args: list[str], **env_overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEBUG"))}
    env.update({"DJANGO_ENV": "production", "SECRET_KEY": SECRET, "ALLOWED_HOSTS": ".example.com"})
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/unused")
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "missing, message",
    [
        ("SECRET_KEY", "DJANGO_ENV=production needs SECRET_KEY"),
        ("ALLOWED_HOSTS", "DJANGO_ENV=production needs ALLOWED_HOSTS"),
    ],
)
def test_required_settings_fail_clearly_at_start(missing, message):
    result = run(["-c", "import config.settings"], **{missing: None})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SECRET_KEY": "short"}, "at least 50 random characters"),
        ({"DEBUG": "true"}, "refuses DEBUG=true"),
        ({"DIAGNOSTIC_SOCKETS": "true"}, "DIAGNOSTIC_SOCKETS cannot be on"),
        ({"DJANGO_ENV": "prod"}, "DJANGO_ENV must be development or production"),
        # A negative age would delete q2's results as they are written.
        ({"Q_KEEP_SUCCESS_HOURS": "-1"}, "Q_KEEP_SUCCESS_HOURS must be 0 (keep) or more"),
        ({"Q_KEEP_FAILURE_DAYS": "-3"}, "Q_KEEP_FAILURE_DAYS must be 0 (keep) or more"),
    ],
)
def test_unsafe_production_settings_are_refused(overrides, message):
    result = run(["-c", "import config.settings"], **overrides)
    assert result.returncode != 0
    assert message in result.stderr


# One process (Django starts in ~5 s on a busy machine): check --deploy, then the settings.
PROBE = """
import django, json
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("check", deploy=True, fail_level="DEBUG")
from config.routing import websocket_urlpatterns
print(json.dumps({
    "routes": [str(p.pattern) for p in websocket_urlpatterns],
    "debug": settings.DEBUG,
    "secure": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "hsts": settings.SECURE_HSTS_SECONDS,
    "allow_private": settings.NETSAFETY_ALLOW_PRIVATE,
    "ebay": settings.MARKETPLACE_BASE_URLS["ebay"],
}))
"""


def test_check_deploy_is_clean_and_production_settings_hold():
    import json

    result = run(["-c", PROBE], DJANGO_SETTINGS_MODULE="config.settings")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["routes"] == ["ws/live/"]  # no ws/whoami/
    assert seen["debug"] is False
    assert seen["secure"] == [True, True]
    assert seen["hsts"] >= 31536000
    assert seen["allow_private"] is False
    assert seen["ebay"] == ["https://api.ebay.com", "https://api.sandbox.ebay.com"]


# --- Content Security Policy -----------------------------------------------------------

TEMPLATE_DIRS = [BASE_DIR / "templates", BASE_DIR / "orchestration" / "templates"]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=|javascript:", re.I)


def test_templates_have_no_inline_script():
    offenders = []
    for directory in TEMPLATE_DIRS:
        for path in directory.rglob("*.html"):
            text = path.read_text()
            for pattern in (INLINE_SCRIPT, INLINE_HANDLER):
                for match in pattern.finditer(text):
                    offenders.append(f"{path.relative_to(BASE_DIR)}: {match.group(0)!r}")
    assert offenders == []


def test_pages_carry_the_policy_and_no_inline_script(tenant_a):
    from tests.helpers import staff_client

    client = staff_client(tenant_a, "csp-admin")
    for url in [
        "/admin/",
        "/admin/orchestration/batch/add/",
        "/admin/orchestration/marketplacejob/",
        "/dashboard/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response.headers["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]*)", policy)
        assert script_src and script_src.group(1).split() == ["'self'"], policy
        assert "frame-ancestors 'none'" in policy
        html = response.text
        assert not INLINE_SCRIPT.search(html), (url, INLINE_SCRIPT.search(html))
        assert not re.search(r"<[^>]+\son(submit|click|load|change)\s*=", html, re.I), url
