"""Shared plumbing of the operator's commands: ``--tenant <schema>`` or ``--all-tenants``,
``--json``, bad input → a message on stderr and a non-zero exit (no traceback), and the
``Actor`` a command's audit entries name (the OS user, door "command")."""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from audit.services import Actor
from tenants.models import Tenant

# Errors a service raises for bad input: shown as a message, never a traceback.
INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, LookupError)


def command_actor() -> Actor:
    name = os.environ.get("ORCHESTRATION_ACTOR") or os.environ.get("SUDO_USER")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # no passwd entry (containers)
            name = "cli"
    return Actor(name, "command")


def tenant_schemas(schema: str | None, all_tenants: bool) -> list[str]:
    known = list(
        Tenant.objects.exclude(schema_name="public")
        .order_by("schema_name")
        .values_list("schema_name", flat=True)
    )
    if all_tenants:
        return known
    if not schema:
        raise CommandError("give --tenant <schema> or --all-tenants")
    if schema not in known:
        raise CommandError(f"unknown tenant {schema!r} (known: {', '.join(known) or 'none'})")
    return [schema]


class OperatorCommand(BaseCommand):
    """Runs ``handle_tenant`` in each tenant named; prints its text, or JSON with --json
    (one tenant: its payload; --all-tenants: ``{schema: payload}``)."""

    all_tenants_allowed = True
    one_line_per_tenant = False  # a table: no "== schema ==" headings

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Tenant schema name, e.g. acme")
        if self.all_tenants_allowed:
            parser.add_argument("--all-tenants", action="store_true", help="Every tenant")
        parser.add_argument("--json", action="store_true", help="Machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        schemas = tenant_schemas(options.get("tenant"), bool(options.get("all_tenants")))
        payloads: dict[str, Any] = {}
        texts: list[str] = []
        for schema in schemas:
            with schema_context(schema):
                try:
                    payload, text = self.handle_tenant(schema, **options)
                except CommandError:
                    raise
                except INPUT_ERRORS as exc:
                    message = getattr(exc, "message", None) or str(exc)
                    raise CommandError(
                        f"{schema}: {message}" if len(schemas) > 1 else message
                    ) from exc
            payloads[schema] = payload
            heading = len(schemas) > 1 and not self.one_line_per_tenant
            texts.append(f"== {schema} ==\n{text}" if heading else text)
        if options["json"]:
            out = payloads if options.get("all_tenants") else payloads[schemas[0]]
            self.stdout.write(json.dumps(out, indent=2, default=str))
        else:
            self.stdout.write("\n".join(texts))
        self.after_output(payloads, **options)

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        """(JSON payload, text line) for one tenant: every operator command defines it (as
        Django's ``BaseCommand.handle`` does, the base raises when one forgets)."""
        raise NotImplementedError(f"{type(self).__module__} must define handle_tenant()")

    def after_output(self, payloads: dict[str, Any], **options: Any) -> None:
        """A hook to set the exit code from what happened."""
