"""The sandbox's control API: ledger, reset, fault rules (times, skip, seeded dice)."""

from __future__ import annotations

import pytest

EBAY_OFFERS = "/sell/inventory/v1/offer?sku=NONE"
AUTH = {"authorization": "Bearer tok-sandbox-tests-000000"}


def status_of(sandbox, path=EBAY_OFFERS) -> int:
    return sandbox.http.get(path, headers=AUTH).status_code


def test_reset_forgets_state_and_rules(sandbox):
    sandbox.faults({"kind": "error", "status": 503})
    assert status_of(sandbox) == 503
    sandbox.reset()
    assert status_of(sandbox) == 404  # eBay's "no offer for this SKU"
    assert sandbox.http.get("/_sandbox/faults").json()["rules"] == []


def test_times_and_skip_limit_a_rule(sandbox):
    sandbox.faults({"kind": "error", "status": 502, "skip": 1, "times": 2})
    assert [status_of(sandbox) for _ in range(5)] == [404, 502, 502, 404, 404]


def test_rules_match_marketplace_operation_and_shop(sandbox):
    sandbox.faults({"kind": "error", "status": 500, "marketplace": "etsy"})
    assert status_of(sandbox) == 404  # eBay is untouched
    sandbox.faults({"kind": "error", "status": 500, "operation": "get_offers", "shop": "nobody"})
    assert status_of(sandbox) == 404


def test_seeded_dice_give_the_same_faults_every_run(sandbox):
    def run() -> list[int]:
        sandbox.reset(seed=42)
        sandbox.faults({"kind": "error", "status": 503, "probability": 0.5})
        return [status_of(sandbox) for _ in range(20)]

    first = run()
    assert first == run()
    assert {404, 503} == set(first)


def test_bad_rules_are_rejected_whole(sandbox):
    response = sandbox.http.post(
        "/_sandbox/faults",
        json={"rules": [{"kind": "error", "status": 503}, {"kind": "explode"}]},
    )
    assert response.status_code == 400
    assert "kind must be one of" in response.json()["error"]
    assert sandbox.http.get("/_sandbox/faults").json()["rules"] == []


@pytest.mark.parametrize("path", ["/sell/inventory/v1/nothing", "/v3/application/nothing"])
def test_unknown_routes_answer_in_the_marketplace_shape(sandbox, path):
    response = sandbox.http.get(path, headers=AUTH)
    assert response.status_code == 404
    body = response.json()
    assert "errors" in body or "error" in body


def test_ledger_filters(sandbox):
    for sku in ("A-1", "A-2"):
        response = sandbox.http.put(
            f"/sell/inventory/v1/inventory_item/{sku}",
            headers=AUTH,
            json={
                "product": {"title": sku, "imageUrls": ["https://img.example.test/x.jpg"]},
                "condition": "NEW",
                "availability": {"shipToLocationAvailability": {"quantity": 1}},
            },
        )
        assert response.status_code == 204
    assert [e["sku"] for e in sandbox.ledger(marketplace="ebay")] == ["A-1", "A-2"]
    assert [e["sku"] for e in sandbox.ledger(sku="A-2")] == ["A-2"]
    assert sandbox.ledger(marketplace="etsy") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/sell/inventory/v1/inventory_item/A-1"),  # a known path, another method
        ("PROPFIND", "/v3/application/listings/1500000001"),  # a method nobody routes
        ("GET", "/sell/inventory/v1/offer/"),  # a trailing slash is not redirected
    ],
)
def test_no_route_is_the_marketplace_404_whatever_the_method(sandbox, method, path):
    response = sandbox.http.request(method, path, headers=AUTH)
    assert response.status_code == 404
    message = f"No route for {method} {path}"
    if path.startswith("/sell/"):
        assert response.json()["errors"][0]["message"] == message
    else:
        assert response.json() == {"error": message}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/_sandbox/nothing"), ("PUT", "/_sandbox/health"), ("GET", "/_sandbox/health/")],
)
def test_unknown_control_endpoints_are_404(sandbox, method, path):
    response = sandbox.http.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"error": f"no control endpoint {method} {path}"}


def test_answers_keep_their_json_encoding(sandbox):
    """Byte for byte what clients have always read (json.dumps defaults), and an empty 204."""
    assert sandbox.http.get("/_sandbox/health").content == b'{"ok": true}'
    response = sandbox.http.put(
        "/sell/inventory/v1/inventory_item/A-1",
        headers=AUTH,
        json={
            "product": {"title": "Chemise \u00e9t\u00e9"},
            "condition": "NEW",
            "availability": {"shipToLocationAvailability": {"quantity": 1}},
        },
    )
    assert (response.status_code, response.content) == (204, b"")
    item = sandbox.http.get("/sell/inventory/v1/inventory_item/A-1", headers=AUTH)
    assert item.headers["content-type"] == "application/json"
    assert b'"title": "Chemise \\u00e9t\\u00e9"' in item.content


def test_error_rules_answer_retry_after_in_the_marketplace_shape(sandbox):
    sandbox.faults({"kind": "error", "status": 429, "retry_after": 2.5, "times": 1})
    response = sandbox.http.get(EBAY_OFFERS, headers=AUTH)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2.5"
    assert response.json()["errors"][0]["message"] == "Injected 429 for get_offers"
