"""Create, list or revoke a tenant's API tokens from the command line."""

from __future__ import annotations

from django.core.management.base import CommandError

from api.models import ApiToken
from api.services import TokenError, token_create, token_revoke
from orchestration.management.base import TenantCommand


class Command(TenantCommand):
    help = "API tokens: --create NAME [--read-only], --list, or --revoke ID."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--create", metavar="NAME", help="Create a token (printed once)")
        group.add_argument("--list", action="store_true")
        group.add_argument("--revoke", metavar="ID", type=int)
        parser.add_argument("--read-only", action="store_true", help="The viewer role's rights")

    def handle(self, *args, **options):
        if options["create"] is not None:
            try:
                token, raw = token_create(
                    name=options["create"],
                    read_only=options["read_only"],
                    created_by="command",
                    door="command",
                )
            except TokenError as exc:
                raise CommandError(str(exc)) from None
            self.emit(options, {"id": token.pk, "name": token.name, "token": raw,
                                "read_only": token.read_only},
                      f"token {token.pk} ({token.name}): {raw}\nstore it now: it is not shown again")  # fmt: skip
        elif options["list"]:
            rows = [
                {"id": t.pk, "name": t.name, "prefix": t.prefix, "read_only": t.read_only,
                 "last_used_at": t.last_used_at, "revoked_at": t.revoked_at}
                for t in ApiToken.objects.all()
            ]  # fmt: skip
            text = "\n".join(
                f"{r['id']:>5}  mpo_{r['prefix']}_…  {'read-only' if r['read_only'] else 'write'}"
                f"  {'revoked' if r['revoked_at'] else 'active'}  {r['name']}"
                for r in rows
            )
            self.emit(options, rows, text or "no tokens")
        else:
            if not ApiToken.objects.filter(pk=options["revoke"]).exists():
                raise CommandError(f"no token {options['revoke']} in this tenant")
            token = token_revoke(token_id=options["revoke"], actor="command", door="command")
            self.emit(options, {"id": token.pk, "revoked_at": token.revoked_at},
                      f"token {token.pk} revoked")  # fmt: skip
