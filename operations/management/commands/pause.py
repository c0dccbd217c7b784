"""Pause a resource (``--resource <key>``) or a whole tenant's work; audited."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from audit.services import record
from operations.cli import OperatorCommand, command_actor
from orchestration import services
from orchestration.engine.claims import resource_policies
from orchestration.models import ResourcePolicy


class Command(OperatorCommand):
    help = "Pause a resource of a tenant (--resource) or the tenant's whole queue."
    paused = True  # ``resume`` is this command with False

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--resource", help="Resource key, e.g. ebay (default: the whole tenant)"
        )

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        actor = command_actor()
        verb, done = ("pause", "paused") if self.paused else ("resume", "resumed")
        key = options["resource"]
        if key:
            resource_policies()
            if not ResourcePolicy.objects.filter(key=key).exists():
                known = ", ".join(ResourcePolicy.objects.values_list("key", flat=True))
                raise CommandError(f"unknown resource {key!r} (known: {known})")
            (services.resource_pause if self.paused else services.resource_resume)(key=key)
            record(actor.name, actor.door, f"resource.{verb}", [("resource", key)])
            return {"resource": key, "paused": self.paused}, f"{schema}: resource {key} {done}"
        (services.tenant_pause if self.paused else services.tenant_resume)(schema_name=schema)
        record(actor.name, actor.door, f"tenant.{verb}", [("tenant", schema)])
        return {"tenant": schema, "paused": self.paused}, f"{schema}: every resource {done}"
