"""Bad input over every door: the API, the admin forms, commands and the live socket.

One corpus of bad values (``BAD_VALUES``) is sent in every field of every entry point.
Expected each time: no server error (no 500, no traceback from a command), nothing stored
lost (the tenant's rows are the same after), and a clear message (API: the JSON error
shape with a request id; admin: the form again with an error; commands: ``CommandError``).
Uploads (truncated multipart, bad CSV rows) and schedules (bad cron) add their rows here.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django_tenants.utils import tenant_context

from api.services import token_create
from marketplaces.models import MarketplaceAccount, Product
from orchestration.models import Batch, MarketplaceJob
from tests.factories import ProductFactory
from tests.integration.live.scenarios import make_staff

BAD_VALUES: list[Any] = [
    None,
    "",
    " ",
    -1,
    0,
    2**63,
    -(2**63) - 1,
    10**400,
    1e308,
    -1e308,
    "NaN",
    "1e999",
    True,
    [],
    {},
    [1, [2, [3]]],
    {"$gt": ""},
    "'; DROP TABLE marketplaces_product; --",
    "1 OR 1=1",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "\x00",
    "a\x00b",
    "\u202eevil\u202c",
    "\ufffd\ufeff\u200b",
    "👩‍👩‍👧‍👦" * 50,
    "é" * 5000,
    "x" * 100_000,
    "../../etc/passwd",
    "%s%s%s%n",
    "{{ 7*7 }}",
]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.API_RATE_LIMIT = "100000/m"
    cache.clear()


@pytest.fixture
def stored(tenant_a):
    """What must survive: a product, an account, a batch with jobs."""
    from orchestration.services import JobSpec, batch_create
    from tests.engine_providers import MARKETPLACE

    ProductFactory(sku="KEEP-1", title="Kept jacket", price=Decimal("12.00"), quantity=3)
    batch_create(name="kept", jobs=[JobSpec(marketplace=MARKETPLACE, action="three")], start=False)
    return snapshot


SCRATCH = "SCRATCH-1"  # a product the API cases may create and update (not in the snapshot)


def snapshot() -> Any:
    return (
        sorted(
            Product.objects.exclude(sku=SCRATCH).values_list(
                "sku", "title", "price", "quantity", "images"
            )
        ),
        sorted(MarketplaceAccount.objects.values_list("marketplace", "base_url", "api_token")),
        sorted(Batch.objects.values_list("pk", "name", "status")),
        sorted(MarketplaceJob.objects.values_list("pk", "status", "priority", "max_retries")),
    )


def assert_clear_api_error(response, context: Any) -> dict:
    assert 400 <= response.status_code < 500, (
        context,
        response.status_code,
        response.content[:300],
    )
    payload = response.json()
    assert set(payload) >= {"error", "message", "request_id", "details"}, payload
    assert payload["message"] and payload["request_id"] == response["X-Request-ID"]
    return payload


# --- the API -------------------------------------------------------------------------------

API_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    # (method, path, a valid body, the field to spoil)
    ("post", "/api/jobs", {"marketplaces": ["ebay"], "products": {"skus": ["KEEP-1"]}}, "marketplaces"),
    ("post", "/api/jobs", {"marketplaces": ["ebay"], "products": {"skus": ["KEEP-1"]}}, "products"),
    ("post", "/api/jobs", {"marketplaces": ["ebay"], "products": {"skus": ["KEEP-1"]}}, "priority"),
    ("post", "/api/jobs", {"marketplaces": ["ebay"], "products": {"skus": ["KEEP-1"]}}, "max_retries"),
    ("post", "/api/jobs", {"marketplaces": ["ebay"], "products": {"skus": ["KEEP-1"]}}, "mode"),
    ("put", f"/api/products/by-sku/{SCRATCH}", {"title": "t", "price": "1.00"}, "price"),
    ("put", f"/api/products/by-sku/{SCRATCH}", {"title": "t", "price": "1.00"}, "quantity"),
    ("put", f"/api/products/by-sku/{SCRATCH}", {"title": "t", "price": "1.00"}, "currency"),
    ("put", f"/api/products/by-sku/{SCRATCH}", {"title": "t", "price": "1.00"}, "condition"),
    ("post", "/api/products/bulk", {"products": []}, "products"),
]  # fmt: skip

# Values a field of that name may legitimately take (then the request succeeds, which is fine
# as long as nothing breaks); anything else must be refused.
# (JSON ``true`` is the integer 1 to the schema's lax parsing: harmless.)
ACCEPTABLE = {"quantity": {0, True}, "priority": {0, -1, True}, "max_retries": {0, True}}


def api_problem(response) -> str | None:
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.content[:120]!r}"
    payload = response.json()
    if not set(payload) >= {"error", "message", "request_id", "details"} or not payload["message"]:
        return f"not the error shape: {payload}"
    return None


def test_the_api_refuses_bad_values_clearly(tenant_a, stored):
    _t, raw = token_create(name="bad input")
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    headers = {"Authorization": f"Bearer {raw}"}
    before = stored()
    problems = []
    for method, path, valid, field in API_CASES:
        for value in BAD_VALUES:
            try:
                data = json.dumps({**valid, field: value})
            except ValueError:
                continue  # not JSON-encodable: the raw-body cases below cover it
            response = getattr(client, method)(
                path, data=data, content_type="application/json", headers=headers
            )
            if response.status_code < 300 and value in ACCEPTABLE.get(field, ()):
                continue
            problem = api_problem(response)
            if problem:
                problems.append(f"{method} {path} {field}={value!r:.60}: {problem}")
    assert not problems, "\n".join(problems)
    after = stored()
    # Accepted harmless values (priority true = 1) made batches; everything before is intact.
    assert after[:2] == before[:2]
    assert set(before[2]) <= set(after[2]) and set(before[3]) <= set(after[3])


@pytest.mark.parametrize(
    "raw_body, content_type",
    [
        (b"{", "application/json"),
        (b'{"marketplaces": ["ebay"], "products": {"skus": ["KEEP-1"]}', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b"marketplaces=ebay", "application/x-www-form-urlencoded"),
        pytest.param(
            b'{"marketplaces": ["ebay"], "products": {"skus": ["' + b"A" * 3_000_000 + b'"]}}',
            "application/json",
        ),
        (b'{"marketplaces": ["ebay"], "products": {"ids": [' + b"1," * 20_000 + b"1]}}", "application/json"),
    ],
    ids=["truncated", "unclosed", "not-utf8", "deep", "array", "null", "form", "3MB", "20k-ids"],
)  # fmt: skip
def test_the_api_refuses_malformed_and_oversized_bodies(tenant_a, stored, raw_body, content_type):
    _t, raw = token_create(name="bad body")
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    before = stored()
    response = client.post(
        "/api/jobs",
        data=raw_body,
        content_type=content_type,
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert_clear_api_error(response, raw_body[:60])
    assert stored() == before


def test_bad_ids_in_api_paths(tenant_a, stored):
    _t, raw = token_create(name="bad path")
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    headers = {"Authorization": f"Bearer {raw}"}
    before = stored()
    for path in [
        "/api/jobs/0",
        "/api/jobs/-1",
        f"/api/jobs/{2**63}",
        f"/api/jobs/{10**30}",
        "/api/jobs/abc",
        "/api/jobs/1%00",
        "/api/batches/99999999999999999999999",
        "/api/products/by-sku/%00",
        "/api/products/by-sku/" + "x" * 5000,
        "/api/jobs?limit=-5",
        "/api/jobs?limit=99999999999999999999",
        "/api/jobs?cursor=%27%20OR%201%3D1",
        "/api/jobs?status=<script>",
    ]:
        for method in ("get", "post", "delete"):
            response = getattr(client, method)(path, headers=headers)
            if response.status_code in (200, 405):  # a list that ignores it / no such verb
                continue
            assert_clear_api_error(response, (method, path))
    assert stored() == before


# --- admin forms ---------------------------------------------------------------------------

PRODUCT_FORM = {
    "sku": "KEEP-1",
    "title": "Kept jacket",
    "price": "12.00",
    "currency": "EUR",
    "quantity": "3",
    "condition": "good",
    "images": "[]",
}
ACCOUNT_FORM = {"marketplace": "ebay", "shop_id": "s", "base_url": "", "is_active": "on"}


def form_values() -> list[str]:
    """The corpus as form text; a dozen representative ones (each post costs a full save)."""
    values = [v if isinstance(v, str) else json.dumps(v) for v in BAD_VALUES if v is not None]
    return [*values[::4], "a\x00b", "x" * 100_000, '["javascript:alert(1)"]', '{"$gt": ""}']


def test_admin_forms_refuse_bad_values_without_losing_anything(tenant_a, stored):
    admin_user = make_staff(tenant_a, "bad-input-admin")
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)
    client.force_login(admin_user)
    product = Product.objects.get(sku="KEEP-1")
    before = stored()
    cases = [
        (f"/admin/marketplaces/product/{product.pk}/change/", PRODUCT_FORM, f)
        for f in ("price", "quantity", "images")
    ] + [("/admin/marketplaces/marketplaceaccount/add/", ACCOUNT_FORM, "base_url")]
    for url, valid, field in cases:
        for value in form_values():
            response = client.post(url, {**valid, field: value})
            assert response.status_code < 500, (url, field, value[:80], response.status_code)
            if response.status_code == 302:  # accepted: a harmless value for that field
                continue
            assert b"errornote" in response.content or b"errorlist" in response.content, (
                url,
                field,
                value[:80],
            )
            # Refused: nothing changed (an accepted harmless value is checked below).
            assert stored()[1:] == before[1:], (url, field, value[:80])
    assert Product.objects.filter(sku="KEEP-1").exists() or Product.objects.count() == 1
    assert stored()[2:] == before[2:]


# --- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "--tenant", "test_alpha", "--marketplace", "nope", "--sku", "KEEP-1"],
        ["publish", "--tenant", "no_such_tenant", "--marketplace", "ebay", "--all-products"],
        ["publish", "--tenant", "'; DROP SCHEMA public; --", "--marketplace", "ebay"],
        pytest.param(
            ["publish", "--tenant", "test_alpha", "--marketplace", "ebay", "--sku", "\x00"],
        ),
        ["jobs_retry", "--tenant", "test_alpha", str(2**63)],
        ["jobs_retry", "--tenant", "test_alpha", "-5"],
        ["jobs_cancel", "--tenant", "test_alpha", "999999999"],
        ["create_tenant", "--name", "x", "--schema", "Bad Schema!", "--domain", "x.localhost"],
        ["create_tenant", "--name", "x", "--schema", "public", "--domain", "y.localhost"],
    ],
    ids=lambda a: " ".join(a)[:60].replace("\x00", "NUL"),
)
def test_commands_refuse_bad_arguments_with_a_message(tenant_a, stored, args):
    """A CommandError (manage.py prints its message, no traceback, exit 1), or, for bulk
    commands, a normal return that says what was done (0 of them) and changes nothing."""
    before = stored()
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        assert str(exc)
    except SystemExit as exc:  # argparse: bad option types (manage.py exits 2 with usage)
        assert exc.code != 0
    else:
        assert (out.getvalue() + err.getvalue()).strip(), "no message at all"
    with tenant_context(tenant_a):
        assert stored() == before


# --- the live socket -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_socket_answers_bad_messages_with_an_error_and_stays_open(
    clean_tenants, release_channel_layer
):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant
    from tests.integration.live.scenarios import login_cookie
    from tests.integration.live.sockets import open_live

    alpha = await sync_to_async(_ensure_tenant)("alpha")
    cookie = await sync_to_async(login_cookie)(alpha, "socket-bad-input")
    socket = await open_live("alpha.localhost", cookie)
    messages: list[Any] = [
        *[{"subscribe": "batch", "id": v} for v in BAD_VALUES if not isinstance(v, float)],
        *[{"subscribe": "jobs", "ids": v} for v in ([-1], [2**70], ["1"], list(range(500)))],
        *[{"subscribe": v} for v in ("", "overview\x00", "<script>", None, 5)],
        {"unsubscribe": "batch", "id": "x"},
        [],
        "just a string",
        {},
    ]
    try:
        for message in messages:
            await socket.send_json_to(message)
            reply = await socket.receive_json_from(timeout=10)
            assert reply["type"] == "error" and reply["error"], (message, reply)
        # Still open and working after all that.
        await socket.send_json_to({"ping": 1})
        assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    finally:
        await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_socket_survives_a_list_as_subscription_kind(
    clean_tenants, release_channel_layer
):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant
    from tests.integration.live.scenarios import login_cookie
    from tests.integration.live.sockets import open_live

    alpha = await sync_to_async(_ensure_tenant)("alpha")
    cookie = await sync_to_async(login_cookie)(alpha, "socket-bad-kind")
    socket = await open_live("alpha.localhost", cookie)
    try:
        await socket.send_json_to({"subscribe": ["batch"]})
        reply = await socket.receive_json_from(timeout=3)
        assert reply["type"] == "error"
    finally:
        await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_socket_survives_text_that_is_not_json(clean_tenants, release_channel_layer):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant
    from tests.integration.live.scenarios import login_cookie
    from tests.integration.live.sockets import open_live

    alpha = await sync_to_async(_ensure_tenant)("alpha")
    cookie = await sync_to_async(login_cookie)(alpha, "socket-not-json")
    socket = await open_live("alpha.localhost", cookie)
    try:
        await socket.send_to(text_data="{")
        reply = await socket.receive_json_from(timeout=3)
        assert reply["type"] == "error"
    finally:
        await socket.disconnect()
