"""The two channel layers the live tests run against (PostgreSQL by default, Redis by setting).

Subprocesses (uvicorn, qcluster) get the Redis layer through ``DJANGO_SETTINGS_MODULE=
tests.integration.live.settings_redis_layer``; the test process through ``override_settings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

REDIS_LAYER_URL = "redis://127.0.0.1:6379/9"  # a database of its own for these tests
# Keys of one test run (its process and the servers and workers it starts, which inherit
# the variable): concurrent runs on one machine share database 9 but never a group. Each
# xdist worker has its own (its tests use the same tenant names, so the same group names,
# in databases of their own): the variable set in the controlling process is inherited by
# every worker, and without the worker's name two workers' batches met on one overview.
PREFIX_ENV = "ORCH_TEST_REDIS_PREFIX"
_run_prefix = os.environ.setdefault(PREFIX_ENV, f"asgi-test-{uuid.uuid4().hex[:12]}")
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
REDIS_PREFIX = (
    f"{_run_prefix}-{_xdist_worker}"
    if _xdist_worker and not _run_prefix.endswith(f"-{_xdist_worker}")
    else _run_prefix
)
os.environ[PREFIX_ENV] = REDIS_PREFIX  # what this worker's servers and clusters inherit

REDIS_CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "config.redis_layer.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_LAYER_URL, "socket_timeout": None}],
            "prefix": REDIS_PREFIX,
        },
    }
}

LAYER_KINDS = ("postgres", "redis")


async def listening_channel():
    """The configured layer and a new channel whose receiver is surely listening.

    channels-postgres starts its LISTEN connection on the first ``receive`` of a
    process and misses what is inserted while it starts: receive one message first.
    """
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "warm.up"})
    assert (await asyncio.wait_for(layer.receive(channel), timeout=10))["type"] == "warm.up"
    return layer, channel


def settings_module(kind: str) -> str:
    return "tests.integration.live.settings_redis_layer" if kind == "redis" else "config.settings"


@contextlib.contextmanager
def publishing_through(kind: str):
    """This process's live publisher sends through ``kind``'s layer (sync tests)."""
    from django.test import override_settings

    from orchestration import live

    live.stop_publisher()
    use = (
        override_settings(CHANNEL_LAYERS=REDIS_CHANNEL_LAYERS)
        if kind == "redis"
        else contextlib.nullcontext()
    )
    with use:
        try:
            yield kind
        finally:
            live.stop_publisher()
