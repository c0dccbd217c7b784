"""Token exfiltration and what error pages, reports and job errors may show (issue 16)."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from django.views.debug import get_default_exception_reporter_filter, technical_500_response

from marketplaces.adapters.http import MarketplaceHttp
from marketplaces.models import MarketplaceAccount
from orchestration.steps import PermanentStepError, RetryableStepError
from tests.helpers import staff_client
from tests.integration.marketplaces.support import run_action
from tests.integration.security.test_ssrf import ctx

CHANGE = "/admin/marketplaces/marketplaceaccount/{}/change/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def form_for(account: MarketplaceAccount, **changes: str) -> dict[str, str]:
    return {
        "marketplace": account.marketplace,
        "shop_id": account.shop_id,
        "base_url": account.base_url,
        "is_active": "on",
        "new_api_token": "",
        **changes,
    }


# --- the base URL ----------------------------------------------------------------------


def test_changing_the_base_url_needs_the_token_again(accounts, tenant_a, local_server):
    account = accounts["ebay"]
    client = staff_client(tenant_a, "acct-admin")
    elsewhere = local_server.origin  # an allowed address in tests (loopback), not the sandbox

    response = client.post(CHANGE.format(account.pk), form_for(account, base_url=elsewhere))
    assert response.status_code == 200  # the form again, with the error
    assert "needs the API token / key again" in response.text
    assert MarketplaceAccount.objects.get(pk=account.pk).base_url == account.base_url

    fresh = "tok-ebay-reentered-0123456789abcdef"
    response = client.post(
        CHANGE.format(account.pk), form_for(account, base_url=elsewhere, new_api_token=fresh)
    )
    assert response.status_code == 302
    saved = MarketplaceAccount.objects.get(pk=account.pk)
    assert (saved.base_url, saved.api_token) == (elsewhere, fresh)


def test_changing_the_marketplace_needs_the_token_again(accounts, tenant_a):
    account = accounts["ebay"]
    account.is_active = False
    account.save()
    client = staff_client(tenant_a, "acct-admin")
    response = client.post(CHANGE.format(account.pk), form_for(account, marketplace="etsy"))
    assert "needs the API token / key again" in response.text
    assert MarketplaceAccount.objects.get(pk=account.pk).marketplace == "ebay"


def test_the_model_refuses_it_for_every_writer(accounts):
    account = MarketplaceAccount.objects.get(pk=accounts["etsy"].pk)
    account.base_url = "http://localhost:9/"
    with pytest.raises(ValidationError, match="needs the API token / key again"):
        account.save()
    account.api_token = "tok-etsy-new-0123456789abcdef"
    account.save()  # with a new token it is fine


def test_unknown_hosts_are_refused(accounts, tenant_a):
    account = accounts["etsy"]
    client = staff_client(tenant_a, "acct-admin")
    response = client.post(
        CHANGE.format(account.pk),
        form_for(account, base_url="https://evil.example.com", new_api_token="tok-x" * 5),
    )
    assert "not a known etsy API address" in response.text
    assert MarketplaceAccount.objects.get(pk=account.pk).base_url == account.base_url


def test_production_hosts_only(accounts, product, sandbox, settings):
    """With production's list, an account still pointing at the sandbox is refused at
    use time: the step fails for good and the token never leaves."""
    settings.MARKETPLACE_BASE_URLS = {"ebay": ["https://api.ebay.com"], "etsy": [], "vinted": []}
    with pytest.raises(PermanentStepError, match="refused: not a known ebay API address"):
        run_action("ebay", "publish", product)
    assert sandbox.ledger() == []
    with pytest.raises(ValidationError):
        MarketplaceAccount(
            marketplace="etsy", shop_id="x", base_url="https://openapi.etsy.com", api_token="t" * 20
        ).save()


# --- error pages and reports -----------------------------------------------------------


def error_page() -> str:
    """Django's debug 500 page for an error raised here (whose frame holds no secret)."""
    request = RequestFactory().get("/boom/")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


def test_the_500_page_masks_credential_urls(settings):
    # Built at run time: the page quotes this test's source lines, which must not match.
    secrets = ["-".join(["Db", "Pa55word", "xyz"]), "-".join(["Redis", "Pa55", "xyz"])]
    settings.DEBUG = True
    settings.DATABASE_URL = f"postgres://orchestrator:{secrets[0]}@db.internal:5432/prod"
    settings.REDIS_URL = f"redis://:{secrets[1]}@cache.internal:6379/0"
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": settings.REDIS_URL}
    html = error_page()
    assert "boom" in html and "DATABASE_URL" in html
    for secret in secrets:
        assert secret not in html


def test_token_fields_never_reach_error_reports(accounts, tenant_a):
    account = accounts["ebay"]
    client = staff_client(tenant_a, "acct-admin")
    token = "tok-ebay-typed-in-0123456789abcdef"
    response = client.post(
        CHANGE.format(account.pk),
        form_for(account, base_url="https://nowhere.example.com", new_api_token=token),
    )
    request = response.wsgi_request
    posted = get_default_exception_reporter_filter().get_post_parameters(request)
    assert posted["new_api_token"] != token
    assert posted["shop_id"] == account.shop_id


# --- non-JSON marketplace errors -------------------------------------------------------

HTML_ERROR = (
    b"<html><head><title>502 Bad Gateway</title><script>alert(document.cookie)</script>"
    b"</head><body><h1>502 Bad Gateway</h1>\x1b[31m\x00"
    + b"<p>upstream down</p>" * 400
    + b"</body>"
)


def test_non_json_error_bodies_become_short_plain_text(local_server):
    local_server.routes["/sell/inventory"] = (502, {"Content-Type": "text/html"}, HTML_ERROR)
    http = MarketplaceHttp(ctx(), marketplace="ebay", base_url=local_server.origin, auth_headers={})
    with pytest.raises(RetryableStepError) as raised:
        http.call("create_inventory_item", "GET", "/sell/inventory")
    message = str(raised.value)
    assert "502 Bad Gateway" in message
    assert "<" not in message and "\x1b" not in message and "\x00" not in message
    assert len(message) < 500


def test_markup_in_a_plain_text_error_body_is_dropped(local_server):
    local_server.routes["/x"] = (
        400,
        {"Content-Type": "text/plain"},
        b"<img src=x onerror=alert(1)>",
    )
    http = MarketplaceHttp(ctx(), marketplace="ebay", base_url=local_server.origin, auth_headers={})
    with pytest.raises(PermanentStepError) as raised:
        http.call("op", "GET", "/x")
    assert "<img" not in str(raised.value)
    assert local_server.hits == ["/x"]


def test_stored_error_text_is_escaped_in_the_admin_and_dashboard(tenant_a):
    """Whatever reached a job's error (a marketplace's words), pages render it as text."""
    from orchestration.models import MarketplaceJob
    from orchestration.services import JobSpec, batch_create
    from tests.engine_providers import MARKETPLACE

    batch = batch_create(name="x", jobs=[JobSpec(marketplace=MARKETPLACE, action="three")])
    payload = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
    # Display only (not a status change): the text a failed step would have left.
    MarketplaceJob.objects.filter(batch=batch).update(error_message=payload)
    job = MarketplaceJob.objects.get(batch=batch)
    client = staff_client(tenant_a, "escape-admin")
    shown = 0
    for url in [
        "/admin/orchestration/marketplacejob/",
        f"/admin/orchestration/marketplacejob/{job.pk}/change/",
        f"/admin/orchestration/marketplacejob/{job.pk}/timeline/",
        "/dashboard/",
    ]:
        html = client.get(url).text
        assert payload not in html and "<script>alert" not in html, url
        assert "onerror=alert(1)>" not in html, url
        shown += "&lt;script&gt;alert(" in html
    assert shown >= 2  # the text is there, as text
