"""The sandbox's ASGI application: marketplace routes, the Vinted bridge, control endpoints.

Control endpoints (``/_sandbox/...``) are for tests, benchmarks and the demo:
  GET    /_sandbox/health                     {"ok": true}
  GET    /_sandbox/ledger?marketplace=&shop=&operation=&sku=   {"entries": [...]}
  POST   /_sandbox/reset    {"seed": 1}       forget state and fault rules
  GET    /_sandbox/faults                     the rules and the seed
  POST   /_sandbox/faults   {"rules": [...], "seed": 1, "replace": true}
  DELETE /_sandbox/faults                     remove every rule
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from marketplaces.sandbox import ebay, etsy, vinted
from marketplaces.sandbox.faults import PROFILES, RuleError
from marketplaces.sandbox.state import Sandbox
from marketplaces.sandbox.web import (
    HttpError,
    Receive,
    Request,
    Response,
    Route,
    Scope,
    Send,
    drop_connection,
    hold,
    send_response,
)

logger = logging.getLogger("marketplaces.sandbox")

ROUTES: list[Route] = [*ebay.ROUTES, *etsy.ROUTES]
ERROR_BODIES = {"ebay": ebay.error_body, "etsy": etsy.error_body, "vinted": vinted.error_body}
BRIDGE_PREFIX = "/vinted/bridge/"


def error_response(
    marketplace: str, status: int, message: str, retry_after: float | None = None
) -> Response:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    return Response(status, ERROR_BODIES[marketplace](status, message), headers)


class SandboxApp:
    """ASGI callable. Everything runs on one event loop, so state needs no locks."""

    def __init__(self, sandbox: Sandbox | None = None):
        self.sandbox = sandbox or Sandbox()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path = scope["path"]
            if path.startswith(BRIDGE_PREFIX) and path[len(BRIDGE_PREFIX) :]:
                await vinted.bridge(self.sandbox, scope, receive, send, path[len(BRIDGE_PREFIX) :])
            else:
                await receive()
                await send({"type": "websocket.close", "code": 4404})
            return
        if scope["type"] != "http":
            return  # lifespan: nothing to set up
        request = await Request.read(scope, receive)
        if request.path.startswith("/_sandbox/"):
            await send_response(send, self.control(request))
            return
        await self.marketplace(request, receive, send)

    async def marketplace(self, request: Request, receive: Receive, send: Send) -> None:
        for route in ROUTES:
            params = route.match(request.method, request.path)
            if params is not None:
                break
        else:
            marketplace = "ebay" if request.path.startswith("/sell/") else "etsy"
            await send_response(
                send,
                error_response(marketplace, 404, f"No route for {request.method} {request.path}"),
            )
            return
        state = self.sandbox.state
        try:
            shop = route.shop_of(state, request, params)
        except HttpError as exc:
            await send_response(send, exc.response)
            return
        outcome = self.sandbox.faults.draw(route.marketplace, route.operation, shop)
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        rule = outcome.rule
        if rule is not None and rule.kind == "error":
            message = rule.message or f"Injected {rule.status} for {route.operation}"
            await send_response(
                send, error_response(route.marketplace, rule.status, message, rule.retry_after)
            )
            return
        if rule is not None and rule.kind == "timeout":
            await self._hold(receive, send, rule.seconds, route.marketplace)
            return
        if rule is not None and rule.kind == "drop":
            await drop_connection(send)
            return
        try:
            response = route.handler(state, request, params, shop)
        except HttpError as exc:
            response = exc.response
        if rule is not None and rule.kind == "lost_response":
            if rule.lost_as == "drop":
                await drop_connection(send)
                return
            if rule.lost_as == "timeout":
                await self._hold(receive, send, rule.seconds, route.marketplace)
                return
            response = error_response(route.marketplace, 500, "Internal server error")
        await send_response(send, response)

    async def _hold(self, receive: Receive, send: Send, seconds: float, marketplace: str) -> None:
        if not await hold(receive, seconds):
            await send_response(send, error_response(marketplace, 504, "Gateway timeout"))

    def control(self, request: Request) -> Response:
        try:
            return self._control(request)
        except (HttpError, RuleError, TypeError, ValueError) as exc:
            if isinstance(exc, HttpError):
                return exc.response
            return Response(400, {"error": str(exc)})

    def _control(self, request: Request) -> Response:
        sandbox, route = self.sandbox, (request.method, request.path)
        if route == ("GET", "/_sandbox/health"):
            return Response(200, {"ok": True})
        if route == ("GET", "/_sandbox/ledger"):
            return Response(200, {"entries": sandbox.state.ledger.query(**request.query)})
        if route == ("POST", "/_sandbox/reset"):
            body = request.json()
            sandbox.reset(seed=body.get("seed"))
            return Response(200, {"ok": True, **sandbox.faults.describe()})
        if route == ("GET", "/_sandbox/faults"):
            return Response(200, sandbox.faults.describe())
        if route == ("DELETE", "/_sandbox/faults"):
            sandbox.faults.clear()
            return Response(200, sandbox.faults.describe())
        if route == ("POST", "/_sandbox/faults"):
            return Response(200, self._set_faults(request.json()))
        return Response(404, {"error": f"no control endpoint {request.method} {request.path}"})

    def _set_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        faults = self.sandbox.faults
        rules = list(body.get("rules") or [])
        if body.get("profile"):
            if body["profile"] not in PROFILES:
                raise RuleError(f"profile must be one of {sorted(PROFILES)}")
            rules = PROFILES[body["profile"]] + rules
        faults.add(rules, replace=body.get("replace", True))
        if body.get("seed") is not None:
            faults.reseed(int(body["seed"]))
        return faults.describe()
