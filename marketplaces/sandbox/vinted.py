"""The Vinted bridge: a WebSocket per seller session at ``/vinted/bridge/{shop_id}``.

Plays both the seller's browser extension and Vinted behind it. One session per
shop (a second one is closed with 4409); a shop belongs to the first bridge
token that connects (another token is closed with 4401). Commands and replies are
described in ``marketplaces/adapters/bridge.py``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from marketplaces.sandbox.state import Sandbox, SandboxState, VintedShop, sandbox_of, token_hash
from marketplaces.sandbox.web import bearer

MARKETPLACE = "vinted"
CLOSE_BUSY, CLOSE_UNAUTHORIZED, CLOSE_DROPPED = 4409, 4401, 1011


class BridgeError(Exception):
    """A failed command: the HTTP status Vinted answered the extension, and Vinted's body."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(status, message, errors)


def error_body(
    status: int, message: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    code = {400: 99, 401: 100, 404: 404, 429: 106}.get(status, 0)
    return {"code": code, "message": message, "errors": errors or []}


def _price(value: Any) -> dict[str, str]:
    try:
        amount = Decimal(str((value or {})["amount"]))
    except (KeyError, TypeError, InvalidOperation):
        raise BridgeError(
            400, "Please fix the errors", [{"field": "price", "value": "is not a number"}]
        ) from None
    if amount < 1:
        raise BridgeError(
            400, "Please fix the errors", [{"field": "price", "value": "must be at least 1.00"}]
        )
    return {"amount": f"{amount:.2f}", "currency_code": str(value.get("currency_code", "EUR"))}


def _item(shop: VintedShop, item_id: Any) -> dict[str, Any]:
    item = shop.items.get(int(item_id)) if str(item_id).isdigit() else None
    if item is None or item["status"] == "deleted":
        raise BridgeError(404, f"Item {item_id} not found")
    return item


def run_command(
    state: SandboxState, shop_id: str, shop: VintedShop, command: str, params: dict[str, Any]
) -> Any:
    """Apply one command to the shop; the result is the reply's ``result``."""
    ledger = state.ledger
    if command == "list_photos":
        return sorted(
            (p for p in shop.photos.values() if p["temp_uuid"] == params.get("temp_uuid")),
            key=lambda p: (p["rank"], p["id"]),
        )
    if command == "upload_photo":
        try:
            content = base64.b64decode(params.get("content_base64", ""), validate=True)
        except (binascii.Error, ValueError):
            raise BridgeError(400, "The photo is not valid base64") from None
        if not content:
            raise BridgeError(400, "The photo is empty")
        photo_id = state.next_id("vinted-photo", 9_000_000_001)
        photo = {
            "id": photo_id,
            "temp_uuid": params.get("temp_uuid"),
            "rank": int(params.get("rank", 1)),
            "url": f"https://images1.vinted.net/t/{photo_id}/f800/{params.get('filename', 'photo')}",
        }
        shop.photos[photo_id] = photo
        ledger.record(
            MARKETPLACE,
            shop_id,
            "upload_photo",
            photo_id=photo_id,
            temp_uuid=photo["temp_uuid"],
            rank=photo["rank"],
        )
        return photo
    if command == "find_item":
        found = [
            i
            for i in shop.items.values()
            if i["sku"] == params.get("sku") and i["status"] != "deleted"
        ]
        return found[-1] if found else None
    if command == "create_item":
        errors = []
        if len(str(params.get("title") or "")) < 5:
            errors.append({"field": "title", "value": "Title should be at least 5 characters long"})
        photo_ids = list(params.get("photo_ids") or [])
        if not photo_ids:
            errors.append({"field": "photos", "value": "Add at least one photo"})
        elif any(p not in shop.photos for p in photo_ids):
            errors.append({"field": "photos", "value": "Unknown photo id"})
        if errors:
            raise BridgeError(400, "Please fix the errors", errors)
        item_id = state.next_id("vinted-item", 4_000_000_001)
        item = {
            "id": item_id,
            "sku": params.get("sku"),
            "title": params["title"],
            "description": params.get("description", ""),
            "brand": params.get("brand", ""),
            "size": params.get("size", ""),
            "catalog": params.get("catalog", ""),
            "status_id": params.get("status_id"),
            "price": _price(params.get("price")),
            "photo_ids": photo_ids,
            "status": "active",
            "quantity": 1,
            "url": f"https://www.vinted.fr/items/{item_id}",
        }
        shop.items[item_id] = item
        ledger.record(MARKETPLACE, shop_id, "create_item", sku=item["sku"], item_id=item_id)
        return item
    if command == "update_item":
        item = _item(shop, params.get("item_id"))
        item["price"] = _price(params.get("price"))
        ledger.record(MARKETPLACE, shop_id, "update_item", sku=item["sku"], item_id=item["id"])
        return item
    if command == "update_quantity":
        item = _item(shop, params.get("item_id"))
        quantity = params.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
            raise BridgeError(400, "Please fix the errors",
                              [{"field": "quantity", "value": "Quantity must be 0 or more"}])  # fmt: skip
        item["quantity"] = quantity
        ledger.record(MARKETPLACE, shop_id, "update_quantity", sku=item["sku"],
                      item_id=item["id"], quantity=quantity)  # fmt: skip
        return item
    if command == "delete_item":
        item = _item(shop, params.get("item_id"))
        item["status"] = "deleted"
        ledger.record(MARKETPLACE, shop_id, "delete_item", sku=item["sku"], item_id=item["id"])
        return {"id": item["id"], "status": "deleted"}
    raise BridgeError(400, f"Unknown command {command!r}")


class Session:
    """One bridge connection: the WebSocket and the shop it speaks for."""

    def __init__(self, sandbox: Sandbox, websocket: WebSocket):
        self.sandbox, self.websocket = sandbox, websocket
        self.shop_id: str = websocket.path_params["shop_id"]
        self.token = bearer(websocket.headers)

    async def send_json(self, message: dict[str, Any]) -> None:
        # json.dumps' defaults, not Starlette's compact send_json: the bytes stay as they were.
        await self.websocket.send_text(json.dumps(message))

    async def close(self, code: int, reason: str = "") -> None:
        await self.websocket.close(code, reason)

    async def run(self) -> None:
        await self.websocket.accept()
        state = self.sandbox.state
        if not self.token:
            await self.close(CLOSE_UNAUTHORIZED, "bridge token missing")
            return
        shop = state.vinted.setdefault(self.shop_id, VintedShop(token_hash=token_hash(self.token)))
        if shop.token_hash != token_hash(self.token):
            await self.close(CLOSE_UNAUTHORIZED, "bridge token refused")
            return
        outcome = self.sandbox.faults.draw(MARKETPLACE, "connect", self.shop_id)
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        if outcome.rule is not None and outcome.rule.kind != "timeout":
            await self.close(CLOSE_DROPPED, "bridge unavailable")
            return
        sessions = self.sandbox.state.vinted_sessions
        if self.shop_id in sessions:
            await self.close(CLOSE_BUSY, "another bridge session is active for this shop")
            return
        sessions.add(self.shop_id)
        try:
            if outcome.rule is None:  # a "timeout" rule: the extension never says ready
                await self.send_json({"type": "ready", "session": uuid.uuid4().hex})
            await self.serve()
        finally:
            # A reset may have swapped the state object: discard from wherever it lives now.
            sessions.discard(self.shop_id)
            self.sandbox.state.vinted_sessions.discard(self.shop_id)

    async def serve(self) -> None:
        while True:
            event = await self.websocket.receive()
            if event["type"] == "websocket.disconnect":
                return
            try:
                message = json.loads(event.get("text") or event.get("bytes") or b"")
                request_id, command = message["id"], str(message["command"])
                params = dict(message.get("params") or {})
            except (ValueError, KeyError, TypeError):
                await self.send_json({"type": "error", "message": "malformed command"})
                continue
            if not await self.handle(request_id, command, params):
                return

    async def handle(self, request_id: str, command: str, params: dict[str, Any]) -> bool:
        """Run one command under the fault rules; False when the connection was closed."""
        outcome = self.sandbox.faults.draw(MARKETPLACE, command, self.shop_id)
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        rule = outcome.rule
        kind = rule.kind if rule else None
        if rule is not None and kind == "error":
            message = rule.message or f"Injected {rule.status}"
            await self.send_json(
                {
                    "id": request_id,
                    "ok": False,
                    "status": rule.status,
                    "error": error_body(rule.status, message),
                    "retry_after": rule.retry_after,
                }
            )
            return True
        if kind == "timeout":
            return True  # the extension never answers this one
        if kind == "drop":
            await self.close(CLOSE_DROPPED, "bridge dropped")
            return False
        state = self.sandbox.state
        shop = state.vinted.setdefault(self.shop_id, VintedShop(token_hash=token_hash(self.token)))
        try:
            reply = {
                "id": request_id,
                "ok": True,
                "result": run_command(state, self.shop_id, shop, command, params),
            }
        except BridgeError as exc:
            reply = {"id": request_id, "ok": False, "status": exc.status, "error": exc.body}
        if rule is not None and kind == "lost_response":
            if rule.lost_as == "drop":
                await self.close(CLOSE_DROPPED, "bridge dropped")
                return False
            if rule.lost_as == "timeout":
                return True
            reply = {
                "id": request_id,
                "ok": False,
                "status": 500,
                "error": error_body(500, "Internal error"),
            }
        await self.send_json(reply)
        return True


async def bridge(websocket: WebSocket) -> None:
    """The endpoint of ``/vinted/bridge/{shop_id}``: one seller session."""
    # The client leaving while we answer is the end of its session, not our error.
    with contextlib.suppress(WebSocketDisconnect):
        await Session(sandbox_of(websocket), websocket).run()
