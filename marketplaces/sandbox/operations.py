"""A marketplace operation as a Starlette route: whose shop it is, the fault dice, the handler.

``ebay.py`` and ``etsy.py`` list their operations with ``Marketplace.route``; the rules of
``faults.py`` decide, per request, whether the handler runs and whether its answer arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from marketplaces.sandbox.faults import FaultRule
from marketplaces.sandbox.state import SandboxState, sandbox_of
from marketplaces.sandbox.web import CutConnection, HeldRequest, HttpError, JSONResponse

# handler(state, request, shop) applies the operation; shop_of(state, request) names the shop
# (or raises the marketplace's 401/403/404) before any fault is drawn.
Handler = Callable[[SandboxState, Request, str], Awaitable[Response]]
ShopOf = Callable[[SandboxState, Request], str]


@dataclass(frozen=True)
class Marketplace:
    name: str
    error_body: Callable[[int, str], dict[str, Any]]

    def error(self, status: int, message: str, retry_after: float | None = None) -> JSONResponse:
        """An error in this marketplace's shape (with ``Retry-After`` when given)."""
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
        return JSONResponse(self.error_body(status, message), status, headers)

    def route(
        self, method: str, path: str, operation: str, handler: Handler, shop_of: ShopOf
    ) -> Route:
        """``path`` takes Starlette's ``{name}`` placeholders (one path segment each)."""

        async def endpoint(request: Request) -> Response:
            return await self.serve(request, operation, handler, shop_of)

        return Route(path, endpoint, methods=[method], name=f"{self.name}.{operation}")

    async def serve(
        self, request: Request, operation: str, handler: Handler, shop_of: ShopOf
    ) -> Response:
        sandbox = sandbox_of(request)
        await request.body()  # the whole request arrives before any fault applies
        state = sandbox.state
        try:
            shop = shop_of(state, request)
        except HttpError as exc:
            return exc.response
        outcome = sandbox.faults.draw(self.name, operation, shop)
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        rule = outcome.rule
        if rule is not None and rule.kind != "lost_response":
            return self.fault(rule, operation)
        try:
            response = await handler(state, request, shop)
        except HttpError as exc:
            response = exc.response
        if rule is not None:  # lost_response: the effect is applied, its answer is lost
            return self.lost(rule)
        return response

    def fault(self, rule: FaultRule, operation: str) -> Response:
        """The answer to a request a rule stops before the handler (no effect applied)."""
        if rule.kind == "error":
            message = rule.message or f"Injected {rule.status} for {operation}"
            return self.error(rule.status, message, rule.retry_after)
        if rule.kind == "timeout":
            return HeldRequest(rule.seconds, then=self.error(504, "Gateway timeout"))
        return CutConnection()  # drop

    def lost(self, rule: FaultRule) -> Response:
        if rule.lost_as == "drop":
            return CutConnection()
        if rule.lost_as == "timeout":
            return HeldRequest(rule.seconds, then=self.error(504, "Gateway timeout"))
        return self.error(500, "Internal server error")
