import json

from django.core.management.base import BaseCommand

from orchestration.tasks import sweep


class Command(BaseCommand):
    help = "Run the recovery sweep now: fail runs whose lease expired ('worker lost'), retry them."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        result = sweep()
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            total = sum(result["recovered"].values())
            self.stdout.write(f"recovered {total} lost run(s)" + "".join(
                f"\n  {schema}: {n}" for schema, n in result["recovered"].items()))  # fmt: skip
