"""The providers are registered with the engine, with their resource limits."""

from __future__ import annotations

import pytest
from django.conf import settings

from marketplaces.models import MarketplaceAccount
from marketplaces.services import ensure_demo_accounts
from orchestration.steps import ResourceLimit, Step, get_provider, registered_marketplaces

PUBLISH_STEPS = {
    "ebay": ["create_inventory_item", "create_offer", "publish_offer"],
    "etsy": ["create_draft_listing", "upload_images", "activate_listing"],
    "vinted": ["upload_photos", "create_item"],
}
RESOURCES = {
    "ebay": ResourceLimit(key="ebay", concurrency=4),
    "etsy": ResourceLimit(key="etsy", concurrency=2, rate_per_minute=60),
    "vinted": ResourceLimit(key="vinted-bridge", concurrency=1),
}


@pytest.mark.parametrize("marketplace", ["ebay", "etsy", "vinted"])
def test_provider_is_registered_with_its_resource_and_steps(marketplace):
    assert marketplace in registered_marketplaces()
    provider = get_provider(marketplace)
    assert provider.resource == RESOURCES[marketplace]
    assert list(provider.actions()) == ["publish", "update", "update_quantity", "unpublish", "sync"]
    assert [s.step_type for s in provider.steps("publish")] == PUBLISH_STEPS[marketplace]
    for action in provider.actions():
        for step in provider.steps(action):
            assert isinstance(step, Step)
            assert step.timeout > 0
    with pytest.raises(KeyError):
        provider.steps("import")


def test_ensure_demo_accounts_is_idempotent(tenant_a):
    assert ensure_demo_accounts() == 3
    assert ensure_demo_accounts() == 0

    accounts = MarketplaceAccount.objects.all()
    assert sorted(a.marketplace for a in accounts) == ["ebay", "etsy", "vinted"]
    for account in accounts:
        assert account.is_active
        assert account.shop_id == f"test_alpha-{account.marketplace}"
        assert account.effective_base_url == settings.SANDBOX_URL.rstrip("/")
        assert len(account.api_token) > 20
