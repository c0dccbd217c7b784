"""`make run`: the whole product on one machine, stopped cleanly by Ctrl-C.

Starts (or joins) PostgreSQL, migrates, seeds the demo tenants, then runs the
ASGI server, the django-q2 cluster and the marketplace sandbox as child
processes. Children get their own session so a terminal Ctrl-C reaches only this
supervisor, which then signals each child's main PID (signalling qcluster's
whole process group deadlocks it: django-q2 issue 346).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "8100"))


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None


def children() -> list[Child]:
    py = sys.executable
    procs = [
        Child(
            "asgi",
            [
                py,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                HOST,
                "--port",
                str(PORT),
                "--ws",
                "websockets-sansio",
                # Live messages are small JSON: compressing each one for each socket cost
                # about a tenth of the server's event loop (docs/live.md).
                "--ws-per-message-deflate",
                "false",
                "--no-access-log",
            ],
        ),
        Child("workers", [py, "manage.py", "run_workers"]),
    ]
    if (BASE_DIR / "marketplaces" / "sandbox").is_dir():
        procs.append(
            Child(
                "sandbox",
                [py, "-m", "marketplaces.sandbox", "--host", HOST, "--port", str(SANDBOX_PORT)],
            )
        )
    return procs


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()  # starts the embedded PostgreSQL when DATABASE_URL is unset
    env = dict(os.environ, DATABASE_URL=settings.DATABASE_URL, PYTHONUNBUFFERED="1")
    env.setdefault("SANDBOX_URL", f"http://{HOST}:{SANDBOX_PORT}")
    print("» migrating", flush=True)
    call_command("migrate_schemas", interactive=False, verbosity=0)
    print("» demo data", flush=True)
    call_command("seed_demo")

    running = children()
    for child in running:
        child.proc = subprocess.Popen(child.argv, cwd=BASE_DIR, env=env, start_new_session=True)

    from tenants.management.commands.seed_demo import DEMO_PASSWORD, DEMO_TENANTS

    db = "embedded PostgreSQL (.data/pg)" if settings.EMBEDDED_DATABASE else "DATABASE_URL"
    print(f"\n  database : {db}\n  workers  : {settings.Q_CLUSTER['workers']} (django-q2)")
    for _name, _schema, domain, _ in DEMO_TENANTS:
        print(
            f"  seller   : http://{domain}:{PORT}/admin/   staff / {DEMO_PASSWORD}   viewer / {DEMO_PASSWORD} (read-only)"
        )
        print(f"  dashboard: http://{domain}:{PORT}/dashboard/")
    print(
        f"  platform : http://localhost:{PORT}/admin/   http://localhost:{PORT}/platform/   platform / {DEMO_PASSWORD}"
    )
    print(f"  health   : http://localhost:{PORT}/healthz")
    print("\n  Ctrl-C stops everything.\n", flush=True)

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping:
        for child in running:
            assert child.proc is not None
            if child.proc.poll() is not None:
                print(f"!! {child.name} exited with {child.proc.returncode}; stopping", flush=True)
                stopping, exit_code = True, 1
        time.sleep(0.5)
    shutdown(running)
    return exit_code


def shutdown(running: list[Child], grace: float = 20.0) -> None:
    print("» stopping", flush=True)
    for child in running:
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)  # main PID only
    deadline = time.monotonic() + grace
    for child in running:
        if child.proc is None:
            continue
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"!! {child.name} did not stop in {grace:.0f}s; killing", flush=True)
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
    print("» stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
