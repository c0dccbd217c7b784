"""What the sandbox adds to Starlette: its JSON, errors raised as answers, body readers,
routes for any method, and the two answers a framework does not give: a cut connection
and a held request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette import responses
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import Receive, Scope, Send


class JSONResponse(responses.JSONResponse):
    """JSON as the sandbox has always written it (``json.dumps`` defaults: ASCII, ``", "``
    separators), and no body at all for ``None`` (a 204)."""

    def render(self, content: Any) -> bytes:
        return b"" if content is None else json.dumps(content).encode()


class HttpError(Exception):
    """Raised by handlers to answer an error without applying any effect."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None):
        super().__init__(status)
        self.response = JSONResponse(body, status, headers)


async def json_body(request: Request) -> Any:
    """The JSON body ({} when empty); a 400 when it is not JSON."""
    body = await request.body()
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HttpError(400, {"error": f"body is not JSON: {exc}"}) from exc


async def json_or_form(request: Request) -> Any:
    """Etsy takes form-encoded bodies as well as JSON (first value of each field, blanks dropped;
    Starlette's own form parser needs python-multipart, which this project does not install)."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    return await json_body(request)


def bearer(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer ...`` header ("" when there is none)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class CutConnection(Response):
    """Start an answer and never finish it: uvicorn closes the socket, the client sees a cut.

    (An ASGI app cannot close a socket directly; an unfinished body is how it says so.)
    """

    def __init__(self) -> None:
        super().__init__(headers={"content-length": "4096"}, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)


class HeldRequest(Response):
    """Answer nothing for ``seconds``, then ``then``; nothing at all if the client hangs up first
    (it usually does: that is the timeout it is meant to see)."""

    def __init__(self, seconds: float, then: Response) -> None:
        super().__init__()
        self.seconds, self.then = seconds, then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(self.seconds):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:
            await self.then(scope, receive, send)


class AnyMethod:
    """A route endpoint for every method, unknown ones included: Starlette routes a plain
    function for GET (or the methods listed) and answers 405 to the rest."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
