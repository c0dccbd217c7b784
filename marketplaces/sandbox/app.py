"""The sandbox's ASGI application: Starlette routes for eBay and Etsy, the Vinted bridge
(a WebSocket), and the control endpoints under ``/_sandbox`` (``control.py``).

Every request runs on one event loop, so the state needs no locks. A path no route takes
is a 404 in the marketplace's error shape, whatever the method (eBay's for ``/sell/...``,
Etsy's otherwise); an unknown WebSocket path is refused (403 at the handshake).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute

from marketplaces.sandbox import control, ebay, etsy, vinted
from marketplaces.sandbox.state import Sandbox
from marketplaces.sandbox.web import AnyMethod


async def no_route(request: Request) -> Response:
    marketplace = ebay.EBAY if request.scope["path"].startswith("/sell/") else etsy.ETSY
    return marketplace.error(404, f"No route for {request.method} {request.scope['path']}")


def create_app(sandbox: Sandbox | None = None) -> Starlette:
    """The app for one sandbox (``app.state.sandbox``: its state and fault rules)."""
    app = Starlette(
        routes=[
            Mount("/_sandbox", routes=control.ROUTES),
            *ebay.ROUTES,
            *etsy.ROUTES,
            WebSocketRoute("/vinted/bridge/{shop_id}", vinted.bridge),
            Route("/{path:path}", AnyMethod(no_route)),
        ]
    )
    app.state.sandbox = sandbox or Sandbox()
    return app
