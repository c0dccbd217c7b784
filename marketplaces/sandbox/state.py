"""The sandbox's memory: per-marketplace stores, the side-effect ledger, id counters."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from marketplaces.sandbox.faults import FaultBook


def seller_key(token: str) -> str:
    """The eBay seller a bearer token stands for.

    On eBay the OAuth token *is* the seller's identity; the sandbox accepts any
    token and names its seller by a short hash, never by the token itself.
    """
    return "seller-" + hashlib.sha256(token.encode()).hexdigest()[:10]


@dataclass
class Ledger:
    """Every side effect the sandbox applied, in order: what tests count to prove 'exactly once'."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def record(self, marketplace: str, shop: str, operation: str, **data: Any) -> None:
        self.entries.append(
            {
                "seq": len(self.entries) + 1,
                "at": time.time(),
                "marketplace": marketplace,
                "shop": shop,
                "operation": operation,
                **data,
            }
        )

    def query(self, **filters: str) -> list[dict[str, Any]]:
        """Entries whose fields equal every non-empty filter (marketplace, shop, operation, sku...)."""
        wanted = {k: v for k, v in filters.items() if v}
        return [e for e in self.entries if all(str(e.get(k)) == v for k, v in wanted.items())]


@dataclass
class EbaySeller:
    inventory: dict[str, dict[str, Any]] = field(default_factory=dict)  # by SKU
    offers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by offerId


@dataclass
class EtsyState:
    listings: dict[int, dict[str, Any]] = field(default_factory=dict)  # ids are global on Etsy
    images: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by listing_id
    shop_keys: dict[str, str] = field(default_factory=dict)  # shop -> hash of the key that owns it


@dataclass
class VintedShop:
    token_hash: str
    photos: dict[int, dict[str, Any]] = field(default_factory=dict)
    items: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SandboxState:
    """Everything a reset forgets (fault rules excepted: ``faults`` has its own reset)."""

    ledger: Ledger = field(default_factory=Ledger)
    ebay: dict[str, EbaySeller] = field(default_factory=dict)
    etsy: EtsyState = field(default_factory=EtsyState)
    vinted: dict[str, VintedShop] = field(default_factory=dict)
    vinted_sessions: set[str] = field(default_factory=set)
    # Realistic-looking, deterministic ids: every reset starts the same sequence.
    _ids: dict[str, Iterator[int]] = field(default_factory=dict)

    def next_id(self, kind: str, start: int) -> int:
        return next(self._ids.setdefault(kind, itertools.count(start)))

    def ebay_seller(self, seller: str) -> EbaySeller:
        return self.ebay.setdefault(seller, EbaySeller())


@dataclass
class Sandbox:
    """The running sandbox: state plus fault rules. One per process."""

    state: SandboxState = field(default_factory=SandboxState)
    faults: FaultBook = field(default_factory=FaultBook)

    def reset(self, *, seed: int | None = None) -> None:
        """Forget all state and fault rules; reseed the fault dice when ``seed`` is given."""
        sessions = self.state.vinted_sessions  # open bridge sockets outlive a reset
        self.state = SandboxState(vinted_sessions=sessions)
        self.faults.clear(seed=seed)


def sandbox_of(connection: HTTPConnection) -> Sandbox:
    """The running sandbox of the app a request or WebSocket came to (``app.state.sandbox``)."""
    return connection.app.state.sandbox


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
