"""The WebSocket client for the Vinted bridge (the seller's browser extension).

Vinted has no public API: the extension, logged in as the seller, relays our
commands to Vinted's web API. One session per seller at a time (the extension
drives one browser tab), which is why Vinted's resource concurrency is 1.

Protocol (JSON text frames):
  bridge → us  {"type": "ready", "session": "..."}                      once, on connect
  us → bridge  {"id": "<hex>", "command": "create_item", "params": {...}}
  bridge → us  {"id": "<hex>", "ok": true, "result": {...}}
               {"id": "<hex>", "ok": false, "status": 400, "error": {"code": 99, "message": "..."},
                "retry_after": 2}
``status`` is the HTTP status the extension got from Vinted, so replies are
classified by the same rules as HTTP answers. A bridge that closes with 4409 is
busy with another session (retried briefly, then a retryable error).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import ExitStack
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from marketplaces.adapters import errors
from marketplaces.models import MarketplaceAccount
from marketplaces.secrets import RedactingLogger
from orchestration.steps import RetryableStepError, StepContext

MARKETPLACE = "vinted"
logger = logging.getLogger("marketplaces.vinted")
# websockets logs handshake headers (the token) at DEBUG: its logger masks them.
wire_logger = logging.getLogger("marketplaces.vinted.wire")

CLOSE_BUSY = 4409
CLOSE_UNAUTHORIZED = 4401
# A session that just ended may still be closing on the bridge side: wait this long for it.
BUSY_WAIT_SECONDS = 2.0
MAX_FRAME_BYTES = 16 * 2**20  # photos travel base64-encoded


def bridge_url(account: MarketplaceAccount) -> str:
    base = account.effective_base_url
    scheme, _, rest = base.partition("://")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return f"{ws_scheme}://{rest}/vinted/bridge/{account.shop_id}"


class BridgeSession:
    """One session on the seller's bridge for one step run: ``with BridgeSession(...) as b``."""

    def __init__(self, ctx: StepContext, account: MarketplaceAccount):
        self.ctx = ctx
        self.url = bridge_url(account)
        self._token = account.api_token
        self._ws: ClientConnection | None = None
        self._stack = ExitStack()

    def __repr__(self) -> str:
        return f"<BridgeSession {self.url}>"

    def __enter__(self) -> BridgeSession:
        self._ws = self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ws = None
        self._stack.close()

    def _timeout(self, operation: str) -> float:
        remaining = self.ctx.remaining()
        if remaining <= 0:
            raise errors.step_timeout(self.ctx, marketplace=MARKETPLACE, operation=operation)
        return remaining

    def _connect(self, stack: ExitStack) -> ClientConnection:
        try:
            # Entered as a context manager: websockets 17.1 deprecates bare connect().
            return stack.enter_context(
                connect(
                    self.url,
                    additional_headers={"authorization": f"Bearer {self._token}"},
                    open_timeout=self._timeout("connect"),
                    close_timeout=1,
                    max_size=MAX_FRAME_BYTES,
                    logger=RedactingLogger(wire_logger, [self._token]),
                )
            )
        except TimeoutError as exc:
            raise errors.step_timeout(
                self.ctx, marketplace=MARKETPLACE, operation="connect"
            ) from exc
        except InvalidStatus as exc:
            raise errors.error_for_status(
                marketplace=MARKETPLACE,
                step_type=self.ctx.step_type,
                operation="connect",
                status=exc.response.status_code,
            ) from exc
        except InvalidURI as exc:
            raise errors.refused(
                self.ctx, marketplace=MARKETPLACE, what=f"the URL {self.url!r}"
            ) from exc
        except (OSError, InvalidHandshake) as exc:
            raise errors.network_error(
                self.ctx, marketplace=MARKETPLACE, operation="connect", exc=exc
            ) from exc

    def _open(self) -> ClientConnection:
        # Half the budget at most: the step still needs time for its commands.
        busy_until = time.monotonic() + min(BUSY_WAIT_SECONDS, self.ctx.remaining() / 2)
        while True:
            with ExitStack() as attempt:  # closes this attempt's socket unless kept below
                ws = self._connect(attempt)
                try:
                    hello = json.loads(ws.recv(timeout=self._timeout("connect")))
                except TimeoutError as exc:
                    raise errors.step_timeout(
                        self.ctx, marketplace=MARKETPLACE, operation="connect"
                    ) from exc
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd else None
                    if code == CLOSE_BUSY and time.monotonic() < busy_until:
                        time.sleep(0.05)
                        continue
                    raise self._refused(code, exc) from exc
                if hello.get("type") != "ready":
                    raise RetryableStepError(
                        f"Vinted bridge sent {hello.get('type')!r} instead of ready"
                    )
                self._stack.push(attempt.pop_all())
                return ws

    def _refused(self, code: int | None, exc: ConnectionClosed) -> Exception:
        if code == CLOSE_BUSY:
            return errors.busy(self.ctx, marketplace=MARKETPLACE)
        if code == CLOSE_UNAUTHORIZED:
            return errors.refused(
                self.ctx, marketplace=MARKETPLACE, what="the seller's bridge token"
            )
        return errors.network_error(self.ctx, marketplace=MARKETPLACE, operation="connect", exc=exc)

    def command(self, name: str, params: dict[str, Any]) -> Any:
        """Send one command and wait (within the step's time) for its reply's result."""
        assert self._ws is not None, "use BridgeSession as a context manager"
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        try:
            self._ws.send(json.dumps({"id": request_id, "command": name, "params": params}))
            while True:
                reply = json.loads(self._ws.recv(timeout=self._timeout(name)))
                if reply.get("id") == request_id:
                    break
        except TimeoutError as exc:
            raise errors.step_timeout(self.ctx, marketplace=MARKETPLACE, operation=name) from exc
        except ConnectionClosed as exc:
            raise errors.disconnected(self.ctx, marketplace=MARKETPLACE, operation=name) from exc
        logger.debug(
            "vinted %s: ok=%s in %.0f ms",
            name,
            reply.get("ok"),
            (time.monotonic() - started) * 1000,
        )
        if reply.get("ok"):
            return reply.get("result")
        raise errors.error_for_status(
            marketplace=MARKETPLACE,
            step_type=self.ctx.step_type,
            operation=name,
            status=int(reply.get("status") or 500),
            body=reply.get("error"),
            retry_after=reply.get("retry_after"),
        )
