"""Shared plumbing for the engine's management commands: a tenant argument, JSON output."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DataError
from django_tenants.utils import schema_context

from tenants.models import Tenant


class TenantCommand(BaseCommand):
    """A command that acts inside one tenant, named by ``--tenant <schema>``."""

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant schema name, e.g. acme")
        parser.add_argument("--json", action="store_true", help="Machine-readable output")

    def execute(self, *args, **options):
        schema = options.get("tenant")
        if (
            schema
            and not Tenant.objects.filter(schema_name=schema).exclude(schema_name="public").exists()
        ):
            known = ", ".join(
                Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
            )
            raise CommandError(f"unknown tenant {schema!r} (known: {known or 'none'})")
        with schema_context(schema):
            try:
                return super().execute(*args, **options)
            except DataError as exc:  # e.g. a NUL in an argument: bad input, not a crash
                raise CommandError(
                    f"a value cannot be stored: {str(exc).splitlines()[0]}"
                ) from None

    def emit(self, options: dict, payload: Any, text: str) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(payload, indent=2, default=str))
        else:
            self.stdout.write(text)
