"""WebsocketCommunicator helpers for /ws/live/ (in-process ASGI application)."""

from __future__ import annotations

import time
import uuid

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from config.asgi import application
from orchestration import live


def communicator(host: str, cookie: str = "", *, origin: str | None = None):
    headers = [(b"host", host.encode()), (b"origin", (origin or f"http://{host}").encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


async def open_live(host: str, cookie: str) -> WebsocketCommunicator:
    """Connected and greeted (``hello``)."""
    comm = communicator(host, cookie)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    hello = await comm.receive_json_from(timeout=10)
    assert hello["type"] == "hello", hello
    return comm


async def close_code(comm: WebsocketCommunicator) -> int | None:
    """The code the server closed with (after accepting, or instead of accepting)."""
    connected, code = await comm.connect(timeout=10)
    if not connected:
        return code
    output = await comm.receive_output(timeout=10)
    assert output["type"] == "websocket.close", output
    return output.get("code")


async def subscribe(comm: WebsocketCommunicator, **request) -> dict:
    """Send a subscription and return the snapshot (or error) that answers it."""
    await comm.send_json_to(request)
    while True:
        message = await comm.receive_json_from(timeout=10)
        if message["type"] in ("snapshot", "error"):
            return message


async def receive_until(comm: WebsocketCommunicator, done, *, timeout: float = 30) -> list[dict]:
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[(m['type'], m.get('status')) for m in received]}"
        message = await comm.receive_json_from(timeout=remaining)
        received.append(message)
        if done(message):
            return received


async def drain(comm: WebsocketCommunicator, seconds: float = 0.5) -> list[dict]:
    """Everything that arrives within ``seconds`` (to show nothing else does)."""
    received: list[dict] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        # (receive_json_from cancels the consumer when it times out: only read what is there)
        if not await comm.receive_nothing(timeout=min(0.05, remaining), interval=0.01):
            received.append(await comm.receive_json_from())
    return received


async def until_control(comm: WebsocketCommunicator, schema: str, group: str) -> list[dict]:
    """What reaches the socket before a control message published after everything this
    process queued so far: shows that something did *not* arrive without guessing how long
    to wait. ``group`` must be one the socket is in (once: one control per group)."""
    assert await sync_to_async(live.flush)(10), "the live publisher did not flush"
    marker = uuid.uuid4().hex
    control = {"type": "test_control", "tenant": schema, "marker": marker,
               "timestamp": timezone.now().isoformat()}  # fmt: skip
    live.get_publisher().publish([live.Outgoing(group, ("test_control", marker), control)])
    received: list[dict] = []
    while True:
        message = await comm.receive_json_from(timeout=10)
        if message.get("marker") == marker:
            return received
        received.append(message)
