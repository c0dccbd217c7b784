from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.services import provision_tenant


class Command(BaseCommand):
    help = "Create a tenant (schema + domain + staff user). Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Display name, e.g. 'Acme'")
        parser.add_argument("--schema", required=True, help="PostgreSQL schema, e.g. acme")
        parser.add_argument("--domain", required=True, help="Host name, e.g. acme.localhost")
        parser.add_argument("--username", help="Staff user to create in the tenant")
        parser.add_argument("--password", help="Password for that user")
        parser.add_argument(
            "--read-only", action="store_true", help="Staff without superuser rights"
        )

    def handle(self, *args, **opts):
        if opts["username"] and not opts["password"]:
            raise CommandError("--password is required with --username")
        try:
            result = provision_tenant(
                name=opts["name"],
                schema_name=opts["schema"],
                domain=opts["domain"],
                staff_username=opts["username"],
                staff_password=opts["password"],
                superuser=not opts["read_only"],
            )
        except ValidationError as exc:
            lines = [f"  {field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
            raise CommandError("invalid tenant:\n" + "\n".join(lines)) from exc
        verb = "created" if result.created_tenant else "already exists"
        self.stdout.write(
            f"tenant {result.tenant.schema_name} {verb} "
            f"(domain {opts['domain']}, {result.seconds:.2f}s)"
        )
        if opts["username"]:
            state = "created" if result.created_user else "already exists"
            self.stdout.write(f"staff user {opts['username']} {state}")
