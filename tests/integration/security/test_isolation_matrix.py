"""Tenant-isolation matrix: every door, tried with the wrong tenant's credentials and ids,
and with a viewer's credentials against every action.

``DOORS`` is the table: one ``Door`` per URL a person or a program can call. Each door is
tried in three ways (the test functions below):

- **foreign ids**: tenant alpha's staff session / API token, on alpha's host, with the ids
  of beta's objects (alpha has none of its own in these tests, so an id can only mean
  beta's). Expected: no read (beta's markers never appear), no write (beta's state is
  unchanged), and "not found" (404, or the admin's own "doesn't exist" redirect), never
  a 403 that would confirm the id exists somewhere.
- **foreign host**: alpha's credentials sent to beta's host, where beta's objects do
  exist. Expected: not authenticated (the login page, 401), no read, no write.
- **viewer**: a staff user with view permissions only / a read-only API token, on its
  own tenant's objects. Expected: every write door refuses (403, or the form again) and
  changes nothing; read doors answer.

Adding a door (uploads, webhooks, schedules as they land) is one ``Door(...)`` line:
``{job}``, ``{batch}``, ``{product}``, ``{sku}``, ``{resource}``, ``{plan}`` in the path
are filled with the target tenant's objects (``World``). Sockets, the platform page and
cache keys have their own tests at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django_tenants.utils import tenant_context

from api.services import token_create
from audit.services import Actor
from marketplaces.models import Product
from operations.models import Operation
from operations.services import operation_create
from orchestration.engine.claims import resource_policies
from orchestration.models import Batch, MarketplaceJob, ResourcePolicy
from orchestration.services import JobSpec, batch_create
from scheduler.models import Schedule, ScheduleFiring
from scheduler.services import schedule_save
from tests.engine_providers import MARKETPLACE
from tests.factories import ProductFactory
from tests.integration.live.scenarios import make_staff
from uploads.models import Upload
from uploads.services import upload_create
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create

MARKER = "Zq-secret-of"  # in every name/title/sku of the target tenant's objects


@dataclass(frozen=True)
class Door:
    name: str
    method: str  # get, post, put, delete
    path: str
    kind: str  # "admin" (session), "api" (token), "page" (session, non-admin)
    writes: bool
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Names (a SKU, a resource key) rather than ids: the same name in the caller's tenant is
    # the caller's own object, so acting there is fine; the target's must stay untouched.
    by_name: bool = False
    # A known bug this row shows in the foreign-ids scenario (run_matrix fails the day it
    # is fixed, so the note is removed then).
    bug: str = ""

    @property
    def aims_at_an_object(self) -> bool:
        if self.by_name:
            return False
        return "{" in self.path.split("?", 1)[0] or any("{" in str(v) for v in self.data.values())


DOORS: list[Door] = [
    # --- admin: jobs ---
    Door("admin job change", "get", "/admin/orchestration/marketplacejob/{job}/change/", "admin", False),
    Door("admin job timeline", "get", "/admin/orchestration/marketplacejob/{job}/timeline/", "admin", False),
    Door("admin job cancel", "post", "/admin/orchestration/marketplacejob/{job}/control/cancel/", "admin", True),
    Door("admin job run now", "post", "/admin/orchestration/marketplacejob/{job}/control/run_now/", "admin", True),
    Door("admin job retry", "post", "/admin/orchestration/marketplacejob/{job}/control/retry/", "admin", True),
    Door("admin job action cancel", "post", "/admin/orchestration/marketplacejob/", "admin", True,
         {"action": "cancel", "_selected_action": "{job}", "index": "0"}),
    Door("admin job bulk cancel", "post", "/admin/orchestration/marketplacejob/bulk/cancel/", "admin", True,
         {"confirm": "1"}),
    Door("admin job list", "get", "/admin/orchestration/marketplacejob/", "admin", False),
    # --- admin: batches ---
    Door("admin batch change", "get", "/admin/orchestration/batch/{batch}/change/", "admin", False),
    Door("admin batch summary", "get", "/admin/orchestration/batch/{batch}/summary/", "admin", False),
    Door("admin batch cancel", "post", "/admin/orchestration/batch/{batch}/control/cancel/", "admin", True),
    Door("admin batch action cancel", "post", "/admin/orchestration/batch/", "admin", True,
         {"action": "cancel", "_selected_action": "{batch}", "index": "0"}),
    Door("admin batch list", "get", "/admin/orchestration/batch/", "admin", False),
    # --- admin: products, resources, accounts ---
    Door("admin product change", "get", "/admin/marketplaces/product/{product}/change/", "admin", False),
    Door("admin product edit", "post", "/admin/marketplaces/product/{product}/change/", "admin", True,
         {"sku": "{sku}", "title": "overwritten", "price": "1.00", "currency": "EUR",
          "quantity": "1", "condition": "good", "images": "[]"}),
    Door("admin product delete", "post", "/admin/marketplaces/product/{product}/delete/", "admin", True,
         {"post": "yes"}),
    Door("admin product list", "get", "/admin/marketplaces/product/", "admin", False),
    Door("admin resource pause", "post", "/admin/orchestration/resourcepolicy/", "admin", True,
         {"action": "pause", "_selected_action": "{resource}", "index": "0"}),
    # --- dashboard ---
    Door("dashboard", "get", "/dashboard/", "page", False),
    *[Door(f"dashboard panel {p}", "get", f"/dashboard/panels/{p}/", "page", False)
      for p in ("batches", "queues", "retrying", "throughput", "failures", "workers")],
    Door("dashboard retry", "post", "/dashboard/jobs/{job}/retry/", "page", True),
    # --- API ---
    Door("api job", "get", "/api/jobs/{job}", "api", False),
    Door("api jobs list", "get", "/api/jobs", "api", False),
    Door("api job cancel", "delete", "/api/jobs/{job}", "api", True),
    Door("api job retry", "post", "/api/jobs/{job}/retry", "api", True),
    Door("api job retry from step", "post", "/api/jobs/{job}/retry-from-step", "api", True, {"step_order": 1}),
    Door("api job run now", "post", "/api/jobs/{job}/run-now", "api", True),
    Door("api batch", "get", "/api/batches/{batch}", "api", False),
    Door("api batches list", "get", "/api/batches", "api", False),
    Door("api batch cancel", "post", "/api/batches/{batch}/cancel", "api", True),
    Door("api batch resume", "post", "/api/batches/{batch}/resume", "api", True),
    Door("api product", "get", "/api/products/{product}", "api", False),
    Door("api products list", "get", "/api/products?sku={sku}", "api", False),
    Door("api product upsert", "put", "/api/products/by-sku/{sku}", "api", True,
         {"title": "overwritten", "price": "1.00", "quantity": 1}, by_name=True),
    Door("api resources", "get", "/api/resources", "api", False),
    Door("api resource pause", "post", "/api/resources/{resource_key}/pause", "api", True,
         by_name=True),
    Door("api plans list", "get", "/api/plans", "api", False),
    # --- uploads ---
    Door("api upload", "get", "/api/uploads/{upload}", "api", False),
    Door("api upload part", "put", "/api/uploads/{upload}/parts/1", "api", True,
         headers={"X-Part-SHA256": "0" * 64}),
    Door("api upload complete", "post", "/api/uploads/{upload}/complete", "api", True),
    Door("api upload import", "post", "/api/uploads/{upload}/import", "api", True),
    Door("api upload delete", "delete", "/api/uploads/{upload}", "api", True),
    # --- webhooks ---
    Door("api webhook endpoint", "get", "/api/webhooks/endpoints/{webhook}", "api", False),
    Door("api webhook endpoints list", "get", "/api/webhooks/endpoints", "api", False),
    Door("api webhook update", "patch", "/api/webhooks/endpoints/{webhook}", "api", True,
         {"description": "overwritten"}),
    Door("api webhook rotate", "post", "/api/webhooks/endpoints/{webhook}/rotate-secret", "api", True),
    Door("api webhook ping", "post", "/api/webhooks/endpoints/{webhook}/ping", "api", True),
    Door("api webhook delete", "delete", "/api/webhooks/endpoints/{webhook}", "api", True),
    Door("api webhook deliveries", "get", "/api/webhooks/deliveries?endpoint={webhook}", "api", False),
    Door("admin webhook endpoint", "get", "/admin/webhooks/webhookendpoint/{webhook}/change/", "admin", False),
    # --- schedules and bulk operations ---
    Door("api schedule", "get", "/api/schedules/{schedule}", "api", False),
    Door("api schedules list", "get", "/api/schedules", "api", False),
    Door("api schedule update", "patch", "/api/schedules/{schedule}", "api", True,
         {"name": "overwritten"}),
    Door("api schedule run", "post", "/api/schedules/{schedule}/run", "api", True),
    Door("api schedule pause", "post", "/api/schedules/{schedule}/pause", "api", True),
    Door("api schedule delete", "delete", "/api/schedules/{schedule}", "api", True),
    Door("admin schedule", "get", "/admin/scheduler/schedule/{schedule}/change/", "admin", False),
    Door("api operation", "get", "/api/operations/{operation}", "api", False),
    Door("api operation cancel", "post", "/api/operations/{operation}/cancel", "api", True),
]  # fmt: skip


@dataclass
class World:
    """One tenant's objects the doors are aimed at."""

    tenant: Any
    job: int
    batch: int
    product: int
    sku: str
    resource: int
    resource_key: str
    upload: str
    webhook: int
    schedule: int
    operation: int

    def fill(self, text: str) -> str:
        return text.format(**{k: v for k, v in vars(self).items() if k != "tenant"})

    def state(self) -> Any:
        """Everything a write door could change, as plain values."""
        with tenant_context(self.tenant):
            return (
                sorted(Batch.objects.values_list("pk", "name", "status")),
                sorted(
                    MarketplaceJob.objects.values_list("pk", "status", "retry_count", "run_after")
                ),
                sorted(Product.objects.values_list("pk", "sku", "title", "price", "quantity")),
                sorted(ResourcePolicy.objects.values_list("key", "paused")),
                sorted(Upload.objects.values_list("pk", "state", "filename")),
                sorted(
                    WebhookEndpoint.objects.values_list("pk", "description", "secret", "active")
                ),
                sorted(WebhookDelivery.objects.values_list("pk", "status")),
                sorted(Schedule.objects.values_list("pk", "name", "active", "next_run_at")),
                sorted(ScheduleFiring.objects.values_list("pk")),
                sorted(Operation.objects.values_list("pk", "status")),
            )


def build_world(tenant, owner: str) -> World:
    with tenant_context(tenant):
        product = ProductFactory(
            sku=f"{MARKER}-{owner}-1", title=f"{MARKER} {owner} jacket", price=Decimal("9.50")
        )
        batch = batch_create(
            name=f"{MARKER} {owner} batch",
            jobs=[JobSpec(marketplace=MARKETPLACE, action="three") for _ in range(2)],
            start=True,
        )
        job = MarketplaceJob.objects.filter(batch=batch).order_by("pk").first()
        assert job is not None
        policy = resource_policies()[job.resource_key]
        upload = upload_create(filename=f"{MARKER}-{owner}.csv", size=10, sha256="0" * 64)
        with connection.cursor() as cursor:  # ids the caller's own tenant has not used
            for table in ("webhooks_webhookendpoint", "scheduler_schedule", "operations_operation"):
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), 700000)", [table])
        webhook = endpoint_create(url="http://127.0.0.1:9/hook", description=f"{MARKER} {owner}")
        actor = Actor(f"{owner}-setup", "command")
        schedule = schedule_save(actor=actor, name=f"{MARKER} {owner} nightly", action="publish",
                                 marketplaces=["ebay"], all_products=True, every_minutes=60)  # fmt: skip
        operation = operation_create(kind="cancel", job_filter={"status": "failed"}, actor=actor)
        return World(
            tenant, job.pk, batch.pk, product.pk, product.sku, policy.pk, policy.key,
            str(upload.pk), webhook.endpoint.pk, schedule.pk, operation.pk,
        )  # fmt: skip


@dataclass
class Caller:
    """One tenant's credentials: an admin session, a viewer session and two API tokens."""

    admin: Client
    viewer: Client
    token: str
    read_token: str

    def send(self, door: Door, world: World, host: str, *, as_viewer: bool = False):
        path = world.fill(door.path)
        data = {k: world.fill(v) if isinstance(v, str) else v for k, v in door.data.items()}
        if door.kind == "api":
            token = self.read_token if as_viewer else self.token
            client = Client(HTTP_HOST=host, raise_request_exception=False)
            kwargs: dict[str, Any] = {
                "headers": {"Authorization": f"Bearer {token}", **door.headers}
            }
            if door.method in ("post", "put", "patch"):
                kwargs.update(data=json.dumps(data), content_type="application/json")
            return getattr(client, door.method)(path, **kwargs)
        client = self.viewer if as_viewer else self.admin
        client.defaults["HTTP_HOST"] = host
        if door.method == "get":
            return client.get(path)
        return getattr(client, door.method)(path, data)


def make_caller(tenant, prefix: str) -> Caller:
    admin_user = make_staff(tenant, f"{prefix}-admin", role="admin")
    viewer_user = make_staff(tenant, f"{prefix}-viewer", role="viewer")
    host = tenant.get_primary_domain().domain
    with tenant_context(tenant):
        viewer_user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label__in=["marketplaces", "webhooks", "scheduler", "operations"],
                codename__startswith="view_",
            )
        )
        # A server error is an answer to report, not an exception in the test.
        admin = Client(HTTP_HOST=host, raise_request_exception=False)
        viewer = Client(HTTP_HOST=host, raise_request_exception=False)
        admin.force_login(admin_user)
        viewer.force_login(viewer_user)
        _t, token = token_create(name=f"{prefix} writer")
        _r, read_token = token_create(name=f"{prefix} reader", read_only=True)
    return Caller(admin, viewer, token, read_token)


@pytest.fixture
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def beta_world(tenant_b, fast_password_hashing) -> World:
    return build_world(tenant_b, "beta")


@pytest.fixture
def alpha(tenant_a, fast_password_hashing) -> Caller:
    cache.clear()  # the API throttle counts per caller in the cache
    return make_caller(tenant_a, "alpha")


def not_found(response, door: Door) -> bool:
    if response.status_code == 404:
        return True
    # The admin answers a missing object with a redirect to its index ("doesn't exist"),
    # and an action on ids that are not here with the list again (done on nothing).
    if door.kind == "admin" and response.status_code == 302:
        return "/login/" not in response["Location"]
    return door.kind == "admin" and response.status_code == 200 and "action" in door.data


def body(response) -> str:
    return response.content.decode(errors="replace")


def run_matrix(doors: list[Door], check) -> None:
    """Every door through ``check(door) -> problem or None``; one report of every problem.

    (One test per scenario rather than per door: the tenants, users and tokens are built
    once instead of ~130 times.) A door with a ``bug`` must still show it: when it stops
    failing, the report says to remove the note.
    """
    problems = []
    for door in doors:
        problem = check(door)
        if door.bug and not problem:
            problems.append(f"{door.name}: fixed? remove its bug note ({door.bug})")
        elif problem and not door.bug:
            problems.append(f"{door.name}: {problem}")
    assert not problems, "\n".join(problems)


def test_foreign_ids_are_not_found_and_untouched(alpha, beta_world):
    def check(door: Door) -> str | None:
        before = beta_world.state()
        response = alpha.send(door, beta_world, "alpha.localhost")
        if response.status_code == 403:
            return "403 says the id exists elsewhere"
        if response.status_code >= 500:
            return f"server error {response.status_code}"
        if MARKER in body(response):
            return "beta's data reached alpha"
        if door.aims_at_an_object and not not_found(response, door):
            return f"expected not found, got {response.status_code}: {body(response)[:200]}"
        if beta_world.state() != before:
            return "beta's data changed"
        return None

    run_matrix(DOORS, check)


def test_foreign_host_does_not_accept_the_credentials(alpha, beta_world):
    def check(door: Door) -> str | None:
        before = beta_world.state()
        response = alpha.send(door, beta_world, "beta.localhost")
        if MARKER in body(response):
            return "beta's data reached alpha's caller"
        if door.kind == "api" and response.status_code != 401:
            return f"expected 401, got {response.status_code}"
        if door.kind != "api" and not (
            response.status_code == 302 and "/login/" in response["Location"]
        ):
            return f"expected the login page, got {response.status_code}"
        if beta_world.state() != before:
            return "beta's data changed"
        return None

    run_matrix([replace(d, bug="") for d in DOORS], check)


@pytest.fixture
def alpha_world(tenant_a, alpha) -> World:
    return build_world(tenant_a, "alpha")


def test_a_viewer_cannot_act_but_can_read(alpha, alpha_world):
    def check(door: Door) -> str | None:
        before = alpha_world.state()
        response = alpha.send(door, alpha_world, "alpha.localhost", as_viewer=True)
        if response.status_code >= 500:
            return f"server error {response.status_code}"
        if not door.writes:
            ok = response.status_code == 200
            return None if ok else f"a read answered {response.status_code}"
        if alpha_world.state() != before:
            return "a viewer changed something"
        if door.kind == "api" and (
            response.status_code != 403 or response.json()["error"] != "forbidden"
        ):
            return f"expected 403 forbidden, got {response.status_code}"
        return None

    run_matrix([replace(d, bug="") for d in DOORS], check)


# --- doors that are not a URL with an id ----------------------------------------------------


def test_the_platform_page_is_not_for_tenant_staff(alpha, tenant_a):
    assert alpha.admin.get("/platform/", HTTP_HOST="alpha.localhost").status_code == 404
    cookie = alpha.admin.cookies["sessionid"].value
    public = Client(HTTP_HOST="localhost")
    public.cookies["sessionid"] = cookie
    response = public.get("/platform/")
    assert response.status_code in (302, 403, 404)
    assert MARKER not in body(response)


def test_api_throttle_keys_are_per_tenant(tenant_a, tenant_b, settings, fast_password_hashing):
    """The throttle's cache keys carry the schema: the same token id in two tenants are two
    callers (tenant alpha using up its rate does not throttle beta, and the reverse)."""
    settings.API_RATE_LIMIT = "3/m"
    cache.clear()
    tokens = {}
    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            token, raw = token_create(name="throttle")
            tokens[tenant.schema_name] = (token.pk, raw)
    statuses_a = [
        Client(HTTP_HOST="alpha.localhost")
        .get("/api/jobs", headers={"Authorization": f"Bearer {tokens['test_alpha'][1]}"})
        .status_code
        for _ in range(4)
    ]
    assert statuses_a == [200, 200, 200, 429]
    beta = Client(HTTP_HOST="beta.localhost").get(
        "/api/jobs", headers={"Authorization": f"Bearer {tokens['test_beta'][1]}"}
    )
    assert beta.status_code == 200
    cache.clear()


# --- the live socket (/ws/live/): subscriptions by id ----------------------------------------

SOCKET_DOORS = [  # (subscription request with the target's ids, what the error names)
    ({"subscribe": "batch", "id": "{batch}"}, "no such batch"),
    ({"subscribe": "job", "id": "{job}"}, "no such job"),
    ({"subscribe": "jobs", "ids": ["{job}"]}, "no such jobs"),
]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_socket_subscriptions_to_foreign_ids_and_hosts(clean_tenants, release_channel_layer):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant
    from tests.integration.live.scenarios import login_cookie
    from tests.integration.live.sockets import close_code, communicator, open_live, subscribe

    alpha_tenant = await sync_to_async(_ensure_tenant)("alpha")
    beta_tenant = await sync_to_async(_ensure_tenant)("beta")
    beta = await sync_to_async(build_world)(beta_tenant, "beta")
    cookie = await sync_to_async(login_cookie)(alpha_tenant, "alpha-socket-admin")

    # Alpha's session on beta's host: refused before any subscription.
    assert await close_code(communicator("beta.localhost", cookie)) == 4403

    # On alpha's host, beta's ids are "no such …", with nothing of beta's in the answer.
    socket = await open_live("alpha.localhost", cookie)
    try:
        for request, wanted in SOCKET_DOORS:
            filled = {
                k: (
                    [int(beta.fill(i)) for i in v]
                    if isinstance(v, list)
                    else int(beta.fill(v))
                    if "{" in str(v)
                    else v
                )
                for k, v in request.items()
            }
            reply = await subscribe(socket, **filled)
            assert reply["type"] == "error" and wanted in reply["error"], (filled, reply)
            assert MARKER not in json.dumps(reply)
    finally:
        await socket.disconnect()
