"""Just enough HTTP on raw ASGI for the sandbox: requests, JSON answers, routes.

Raw ASGI rather than a framework because the faults need what frameworks hide:
holding a request until the client gives up, and cutting a connection mid-answer.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    @classmethod
    async def read(cls, scope: Scope, receive: Receive) -> Request:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        return cls(scope["method"], scope["path"], query, headers, b"".join(chunks))

    def json(self) -> Any:
        """The JSON body ({} when empty); a 400 when it is not JSON."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, {"error": f"body is not JSON: {exc}"}) from exc

    def json_or_form(self) -> Any:
        """Etsy takes form-encoded bodies as well as JSON."""
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}
        return self.json()

    def bearer(self) -> str:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        payload = b"" if self.body is None else json.dumps(self.body).encode()
        headers = {"content-type": "application/json", **self.headers}
        headers["content-length"] = str(len(payload))
        return [(k.encode(), v.encode()) for k, v in headers.items()], payload


class HttpError(Exception):
    """Raised by handlers to answer an error without applying any effect."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.response = Response(status, body, headers or {})


async def send_response(send: Send, response: Response) -> None:
    headers, payload = response.encode()
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def drop_connection(send: Send) -> None:
    """Start an answer and never finish it: uvicorn closes the socket, the client sees a cut.

    (An ASGI app cannot close a socket directly; an unfinished body is how it says so.)
    """
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )


async def hold(receive: Receive, seconds: float) -> bool:
    """Answer nothing for ``seconds``; True if the client hung up meanwhile (it usually does)."""

    async def until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(until_disconnect(), timeout=seconds)
    except TimeoutError:
        return False
    return True


Handler = Callable[..., Response]
ShopOf = Callable[[Any, Request, dict[str, str]], str | None]


@dataclass(frozen=True)
class Route:
    """``pattern`` uses ``{name}`` placeholders for one path segment each."""

    method: str
    pattern: str
    marketplace: str
    operation: str
    handler: Handler
    shop_of: ShopOf
    regex: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern)
        object.__setattr__(self, "regex", re.compile(f"^{regex}$"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.regex.match(path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None
