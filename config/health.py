"""/healthz: is the database answering, and does the channel layer deliver?"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse

from orchestration.selectors import cluster_health


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    if message.get("type") != "healthz.ping":
        raise RuntimeError(f"channel layer returned {message!r}")


async def healthz(request):
    checks: dict[str, dict] = {}
    for name, check in (
        ("database", sync_to_async(_check_database, thread_sensitive=True)),
        ("channel_layer", _check_channel_layer),
    ):
        started = time.perf_counter()
        try:
            await check()
            checks[name] = {"ok": True}
        except Exception as exc:
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        checks[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    ok = all(c["ok"] for c in checks.values())
    # The workers' liveness is reported, not judged here: a dead cluster is not a reason to
    # restart this server. /healthz/workers answers 503 for it.
    workers = await sync_to_async(_workers, thread_sensitive=True)()
    return JsonResponse(
        {"status": "ok" if ok else "error", "checks": checks, "workers": workers},
        status=200 if ok else 503,
    )


def _workers() -> dict:
    try:
        health = cluster_health()
    except Exception as exc:
        return {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"], "clusters": []}
    return {
        "ok": health["ok"],
        "problems": health["problems"],
        "clusters": [
            {key: c[key] for key in ("name", "verdict", "reason", "alive", "workers",
                                     "progress_seconds", "ready_waiting", "restarts_last_hour")}
            for c in health["clusters"]
        ],
    }  # fmt: skip


async def healthz_workers(request):
    """Liveness of the worker clusters: 200 when every one is alive and working, else 503."""
    workers = await sync_to_async(_workers, thread_sensitive=True)()
    return JsonResponse(workers, status=200 if workers["ok"] else 503)
