"""Failures are classified the way the engine needs: retryable (with Retry-After) or permanent."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from marketplaces.adapters.bridge import bridge_url
from orchestration.steps import PermanentStepError, RetryableStepError, StepTimeout
from tests.integration.marketplaces.conftest import make_account
from tests.integration.marketplaces.support import free_port, run_action, step_context, step_named

# The first side-effecting step of each publish, and the sandbox operation it calls.
FIRST_EFFECT = {
    "ebay": ("create_inventory_item", "create_or_replace_inventory_item"),
    "etsy": ("create_draft_listing", "create_draft_listing"),
    "vinted": ("upload_photos", "upload_photo"),
}
MARKETPLACES = list(FIRST_EFFECT)


def perform_first_effect(marketplace, product, *, timeout=None):
    step = step_named(marketplace, "publish", FIRST_EFFECT[marketplace][0])
    ctx = step_context(
        step, marketplace=marketplace, action="publish", product=product, timeout=timeout
    )
    return step, step.perform(ctx)


@pytest.mark.parametrize("marketplace", MARKETPLACES)
def test_429_is_retryable_and_honours_retry_after(marketplace, accounts, product, sandbox):
    operation = FIRST_EFFECT[marketplace][1]
    sandbox.faults({"kind": "error", "operation": operation, "status": 429, "retry_after": 7})

    with pytest.raises(RetryableStepError) as caught:
        perform_first_effect(marketplace, product)

    assert caught.value.retry_after == 7
    assert "429" in caught.value.message
    assert sandbox.ledger(marketplace=marketplace) == []


@pytest.mark.parametrize("status", [500, 502, 503, 408])
@pytest.mark.parametrize("marketplace", MARKETPLACES)
def test_5xx_and_408_are_retryable(marketplace, status, accounts, product, sandbox):
    operation = FIRST_EFFECT[marketplace][1]
    sandbox.faults(
        {"kind": "error", "operation": operation, "status": status, "message": "try later"}
    )

    with pytest.raises(RetryableStepError) as caught:
        perform_first_effect(marketplace, product)

    assert not isinstance(caught.value, StepTimeout)
    assert caught.value.retry_after is None
    assert "try later" in caught.value.message


@pytest.mark.parametrize("marketplace", MARKETPLACES)
def test_injected_400_is_permanent_with_the_marketplace_message(
    marketplace, accounts, product, sandbox
):
    operation = FIRST_EFFECT[marketplace][1]
    sandbox.faults(
        {
            "kind": "error",
            "operation": operation,
            "status": 400,
            "message": "Item specifics missing: Brand",
        }
    )

    with pytest.raises(PermanentStepError) as caught:
        perform_first_effect(marketplace, product)

    assert not caught.value.retryable
    assert "Item specifics missing: Brand" in str(caught.value)


def test_ebay_validation_error_keeps_ebays_message(accounts, product, sandbox):
    product.title = "A very long title " * 6  # eBay titles stop at 80 characters
    product.save()
    with pytest.raises(PermanentStepError) as caught:
        perform_first_effect("ebay", product)
    message = str(caught.value)
    assert "eBay rejected create_or_replace_inventory_item" in message
    assert "[25709] Invalid value for product.title" in message
    assert caught.value.detail["status"] == 400


def test_etsy_validation_error_keeps_etsys_message(accounts, product, sandbox):
    product.quantity = 0
    product.save()
    with pytest.raises(PermanentStepError) as caught:
        perform_first_effect("etsy", product)
    assert "quantity: must be an integer between 1 and 999" in str(caught.value)


def test_vinted_validation_error_keeps_vinteds_message(accounts, product, sandbox):
    product.title = "Cap"
    product.save()
    outputs = run_action("vinted", "publish", product, until="create_item")
    step = step_named("vinted", "publish", "create_item")
    with pytest.raises(PermanentStepError) as caught:
        step.perform(
            step_context(
                step, marketplace="vinted", action="publish", product=product, outputs=outputs
            )
        )
    assert "title: Title should be at least 5 characters long" in str(caught.value)


def test_etsy_shop_of_another_key_is_forbidden(accounts, product, sandbox):
    run_action("etsy", "publish", product)  # the shop now belongs to alpha's key
    accounts["etsy"].api_token = "tok-etsy-someone-else-0000"
    accounts["etsy"].save()
    with pytest.raises(PermanentStepError) as caught:
        perform_first_effect("etsy", product)
    assert "403" in str(caught.value)
    assert "cannot access shop alpha-etsy" in str(caught.value)


def test_http_timeout_is_a_step_timeout_naming_step_and_limit(accounts, product, sandbox):
    sandbox.faults(
        {"kind": "timeout", "operation": "create_or_replace_inventory_item", "seconds": 10}
    )

    with pytest.raises(StepTimeout) as caught:
        perform_first_effect("ebay", product, timeout=0.4)

    assert "step 'create_inventory_item' timed out after 0.4s" in str(caught.value)
    assert caught.value.detail["limit_seconds"] == 0.4
    assert caught.value.retryable


def test_dropped_connection_is_retryable_and_applies_nothing(accounts, product, sandbox):
    sandbox.faults({"kind": "drop", "operation": "create_draft_listing"})
    with pytest.raises(RetryableStepError) as caught:
        perform_first_effect("etsy", product)
    assert "connection failed" in str(caught.value)
    assert sandbox.ledger(marketplace="etsy") == []


def test_unreachable_marketplace_is_retryable(tenant_a, product):
    make_account("ebay", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(RetryableStepError) as caught:
        perform_first_effect("ebay", product)
    assert "ConnectError" in str(caught.value)


def test_missing_account_is_permanent(tenant_a, product):
    with pytest.raises(PermanentStepError, match="no active eBay account"):
        perform_first_effect("ebay", product)


def test_vinted_bridge_timeout_is_a_step_timeout_naming_the_step(accounts, product, sandbox):
    outputs = run_action("vinted", "publish", product, until="create_item")
    sandbox.faults({"kind": "timeout", "marketplace": "vinted", "operation": "create_item"})
    step = step_named("vinted", "publish", "create_item")
    ctx = step_context(
        step, marketplace="vinted", action="publish", product=product, outputs=outputs, timeout=2
    )  # (2 s: the handshake must fit in it on a loaded machine, or "(connect)" is named)

    with pytest.raises(StepTimeout) as caught:
        step.perform(ctx)

    assert "step 'create_item' timed out after 2s waiting for Vinted (create_item)" in str(
        caught.value
    )
    assert sandbox.ledger(marketplace="vinted", operation="create_item") == []


def test_vinted_bridge_disconnect_mid_command_is_retryable(accounts, product, sandbox):
    outputs = run_action("vinted", "publish", product, until="create_item")
    sandbox.faults(
        {"kind": "drop", "marketplace": "vinted", "operation": "create_item", "times": 1}
    )
    step = step_named("vinted", "publish", "create_item")

    with pytest.raises(RetryableStepError) as caught:
        step.perform(
            step_context(
                step, marketplace="vinted", action="publish", product=product, outputs=outputs
            )
        )

    assert not isinstance(caught.value, StepTimeout)
    assert "Vinted bridge disconnected during create_item in step 'create_item'" in str(
        caught.value
    )
    assert sandbox.ledger(marketplace="vinted", operation="create_item") == []
    # The next attempt goes through.
    run_action("vinted", "publish", product, outputs=outputs)
    assert sandbox.operations(marketplace="vinted")["create_item"] == 1


def test_vinted_bridge_holds_one_session_per_seller(accounts, product, sandbox):
    account = accounts["vinted"]
    headers = {"authorization": f"Bearer {account.api_token}"}
    with connect(bridge_url(account), additional_headers=headers) as other_session:
        assert '"ready"' in other_session.recv(timeout=5)
        step = step_named("vinted", "publish", "upload_photos")
        # The adapter retries a busy bridge for half the step's budget (at most 2 s), then
        # says busy; a budget of 4 s leaves every attempt's handshake 2 s even on a loaded
        # machine (0.6 s did not: CI saw the handshake time out instead).
        ctx = step_context(step, marketplace="vinted", action="publish", product=product, timeout=4)
        with pytest.raises(RetryableStepError, match="busy"):
            step.check(ctx)
    # Once the other session is gone, the bridge is free again.
    run_action("vinted", "publish", product)


def test_vinted_bridge_refuses_another_sellers_token(accounts, product, sandbox):
    run_action("vinted", "publish", product)  # the shop is bound to alpha's bridge token
    accounts["vinted"].api_token = "tok-vinted-intruder-000000"
    accounts["vinted"].save()
    with pytest.raises(PermanentStepError, match="refused the seller's bridge token"):
        perform_first_effect("vinted", product)
