"""The HTTP side of the adapters: one pooled client per base URL, per-step time budget.

Every request's timeout is what is left of the step's limit (``ctx.remaining()``),
so a step never outlives it; running out is a ``StepTimeout`` naming the step.
Logs say marketplace, operation, method, path, status and duration, never headers.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any

import httpx

from marketplaces.adapters import errors
from orchestration.steps import PermanentStepError, StepContext

logger = logging.getLogger("marketplaces.http")

USER_AGENT = "marketplace-orchestrator/0.1"
_clients: dict[tuple[int, str], httpx.Client] = {}
_clients_lock = threading.Lock()


def pooled_client(base_url: str) -> httpx.Client:
    """A keep-alive client for ``base_url``, shared by the threads of this process.

    Keyed by PID too: a client inherited across fork would share sockets with the parent.
    """
    key = (os.getpid(), base_url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = httpx.Client(
                base_url=base_url,
                headers={"user-agent": USER_AGENT},
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            )
            _clients[key] = client
        return client


@atexit.register
def close_clients() -> None:
    """Close every pooled client (at exit, or in tests that want a clean slate)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def response_body(response: httpx.Response) -> Any:
    """JSON when the answer is JSON, else a short plain-text excerpt (None when empty).

    A non-JSON body (a proxy's HTML error page) ends up in a job's error message: it is
    reduced to text without tags or control characters and truncated (errors.plain_excerpt).
    """
    if not response.content:
        return None
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return errors.plain_excerpt(response.text)


class MarketplaceHttp:
    """Requests to one marketplace account for one step run."""

    def __init__(
        self,
        ctx: StepContext,
        *,
        marketplace: str,
        base_url: str,
        auth_headers: Mapping[str, str],
    ):
        self.ctx = ctx
        self.marketplace = marketplace
        self.base_url = base_url
        self._auth_headers = dict(auth_headers)

    def __repr__(self) -> str:  # no headers: they hold the credential
        return f"<MarketplaceHttp {self.marketplace} {self.base_url}>"

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        allow: Collection[int] = (),
    ) -> httpx.Response:
        """Send one request; 2xx and the ``allow``ed statuses come back, the rest raise a StepError."""
        remaining = self.ctx.remaining()
        if remaining <= 0:
            raise errors.step_timeout(self.ctx, marketplace=self.marketplace, operation=operation)
        started = time.monotonic()
        try:
            response = pooled_client(self.base_url).request(
                method,
                path,
                json=json,
                params=params,
                files=files,
                data=data,
                headers=self._auth_headers,
                timeout=httpx.Timeout(remaining),
            )
        except httpx.TimeoutException as exc:
            raise errors.step_timeout(
                self.ctx, marketplace=self.marketplace, operation=operation
            ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentStepError(
                f"bad {errors.label(self.marketplace)} base URL {self.base_url!r}: {exc}",
                detail={"step": self.ctx.step_type, "operation": operation},
            ) from exc
        except httpx.TransportError as exc:
            raise errors.network_error(
                self.ctx, marketplace=self.marketplace, operation=operation, exc=exc
            ) from exc
        logger.debug(
            "%s %s: %s %s -> %s in %.0f ms",
            self.marketplace,
            operation,
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        if response.is_success or response.status_code in allow:
            return response
        raise errors.error_for_status(
            marketplace=self.marketplace,
            step_type=self.ctx.step_type,
            operation=operation,
            status=response.status_code,
            body=response_body(response),
            retry_after=response.headers.get("retry-after"),
        )
