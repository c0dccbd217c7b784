"""The sandbox runs as a real process for the whole session; each test starts from a clean one."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from marketplaces.models import MarketplaceAccount
from tests.factories import ProductFactory
from tests.integration.marketplaces.support import Sandbox, SandboxProcess

MARKETPLACES = ("ebay", "etsy", "vinted")


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory):
    process = SandboxProcess.start(tmp_path_factory.mktemp("sandbox") / "sandbox.log")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def sandbox_http(sandbox_process):
    # One client for the session: building an httpx.Client (its SSL context) costs ~30 ms.
    with httpx.Client(base_url=sandbox_process.url, timeout=5) as client:
        yield client


@pytest.fixture
def sandbox(sandbox_process, sandbox_http):
    """A sandbox with no state and no fault rules (reset before the test)."""
    client = Sandbox(sandbox_process.url, sandbox_http)
    client.reset()
    return client


def make_account(marketplace: str, base_url: str, **fields) -> MarketplaceAccount:
    values = {
        "shop_id": f"alpha-{marketplace}",
        "base_url": base_url,
        # Unique and long, so "not in the page / the logs" means something.
        "api_token": f"tok-{marketplace}-{uuid.uuid4().hex}",
        **fields,
    }
    return MarketplaceAccount.objects.create(marketplace=marketplace, **values)


@pytest.fixture
def accounts(tenant_a, sandbox) -> dict[str, MarketplaceAccount]:
    """One active account per marketplace in tenant alpha, pointing at the sandbox."""
    return {m: make_account(m, sandbox.url) for m in MARKETPLACES}


@pytest.fixture
def product(tenant_a):
    return ProductFactory(
        sku="ALPHA-001",
        title="Levi's 501 jeans",
        price=Decimal("25.00"),
        quantity=2,
        images=["https://img.example.test/alpha/001-1.jpg"],
    )
