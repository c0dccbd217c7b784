"""The isolation matrix's world: one tenant's objects the doors aim at (``World``), a
tenant's credentials that send a door (``Caller``), and ``run_matrix``, which tries every
door and reports every problem at once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Permission
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
from tests.integration.security.isolation_doors import MARKER, Door
from uploads.models import Upload
from uploads.services import upload_create
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create


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
