"""The control endpoints, mounted at ``/_sandbox``, for tests, benchmarks and the demo:

  GET    /_sandbox/health                     {"ok": true}
  GET    /_sandbox/ledger?marketplace=&shop=&operation=&sku=   {"entries": [...]}
  POST   /_sandbox/reset    {"seed": 1}       forget state and fault rules
  GET    /_sandbox/faults                     the rules and the seed
  POST   /_sandbox/faults   {"rules": [...], "seed": 1, "replace": true}
  DELETE /_sandbox/faults                     remove every rule

Anything else under ``/_sandbox/`` is a 404 ``{"error": ...}``, whatever the method.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from marketplaces.sandbox.faults import PROFILES, RuleError
from marketplaces.sandbox.state import sandbox_of
from marketplaces.sandbox.web import AnyMethod, HttpError, JSONResponse, json_body

Endpoint = Callable[[Request], Awaitable[Response]]


def bad_input_is_400(endpoint: Endpoint) -> Endpoint:
    """A body the caller got wrong (not JSON, a bad rule) is its 400, not the sandbox's 500."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpError as exc:
            return exc.response
        except (TypeError, ValueError) as exc:  # RuleError is a ValueError
            return JSONResponse({"error": str(exc)}, 400)

    return wrapped


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def ledger(request: Request) -> Response:
    entries = sandbox_of(request).state.ledger.query(**request.query_params)
    return JSONResponse({"entries": entries})


@bad_input_is_400
async def reset(request: Request) -> Response:
    sandbox, body = sandbox_of(request), await json_body(request)
    sandbox.reset(seed=body.get("seed"))
    return JSONResponse({"ok": True, **sandbox.faults.describe()})


async def faults(request: Request) -> Response:
    return JSONResponse(sandbox_of(request).faults.describe())


async def clear_faults(request: Request) -> Response:
    book = sandbox_of(request).faults
    book.clear()
    return JSONResponse(book.describe())


@bad_input_is_400
async def set_faults(request: Request) -> Response:
    book, body = sandbox_of(request).faults, await json_body(request)
    rules = list(body.get("rules") or [])
    if body.get("profile"):
        if body["profile"] not in PROFILES:
            raise RuleError(f"profile must be one of {sorted(PROFILES)}")
        rules = PROFILES[body["profile"]] + rules
    book.add(rules, replace=body.get("replace", True))
    if body.get("seed") is not None:
        book.reseed(int(body["seed"]))
    return JSONResponse(book.describe())


async def no_endpoint(request: Request) -> Response:
    return JSONResponse(
        {"error": f"no control endpoint {request.method} {request.scope['path']}"}, 404
    )


ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/ledger", ledger, methods=["GET"]),
    Route("/reset", reset, methods=["POST"]),
    Route("/faults", faults, methods=["GET"]),
    Route("/faults", set_faults, methods=["POST"]),
    Route("/faults", clear_faults, methods=["DELETE"]),
    Route("/{path:path}", AnyMethod(no_endpoint)),
]
