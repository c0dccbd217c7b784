import os

from django.core.management.base import BaseCommand
from django_tenants.utils import tenant_context

from marketplaces.services import ensure_demo_accounts, load_demo_products
from planning.services import load_demo_history
from tenants.services import (
    ensure_public_tenant,
    ensure_staff_user,
    grant_view_permissions,
    provision_tenant,
)

DEMO_TENANTS = [
    # (name, schema, domain, fixture)
    ("Acme Outfitters", "acme", "acme.localhost", "acme"),
    ("Globex Electronics", "globex", "globex.localhost", "globex"),
]
DEMO_PASSWORD = "demo-pass-123"
# The read-only role sees these, acts on nothing.
VIEWER_APPS = ("orchestration", "marketplaces", "planning", "uploads", "webhooks", "scheduler",
               "operations", "audit")  # fmt: skip


class Command(BaseCommand):
    help = (
        "Create the public tenant, two demo sellers with staff users and demo products. Idempotent."
    )

    def handle(self, *args, **opts):
        port = os.environ.get("PORT", "8000")  # what make run serves on (config/stack.py)
        public = ensure_public_tenant()
        ensure_staff_user(tenant=public, username="platform", password=DEMO_PASSWORD)
        for name, schema, domain, fixture in DEMO_TENANTS:
            result = provision_tenant(
                name=name,
                schema_name=schema,
                domain=domain,
                staff_username="staff",
                staff_password=DEMO_PASSWORD,
            )
            ensure_staff_user(
                tenant=result.tenant, username="viewer", password=DEMO_PASSWORD, superuser=False
            )
            grant_view_permissions(tenant=result.tenant, username="viewer", app_labels=VIEWER_APPS)
            with tenant_context(result.tenant):
                created = load_demo_products(fixture=fixture)
                ensure_demo_accounts()
                history = load_demo_history(fixture=fixture)  # stock planning's sales and stores
            state = "created" if result.created_tenant else "exists"
            self.stdout.write(
                f"{schema:8} {state:8} {result.seconds:5.2f}s  products +{created}  sales rows {history['sales']}  http://{domain}:{port}/admin/"
            )
