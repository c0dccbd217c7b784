import json

from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from orchestration.selectors import cluster_health


class Command(BaseCommand):
    help = (
        "Liveness of the worker clusters (run_workers): exit 0 when every cluster is alive "
        "and working, 1 when one is stalled, restarting or silent, or none runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--local", action="store_true", help="only the clusters of this host (a pod's probe)"
        )

    def handle(self, *args, **options):
        import socket

        try:
            health = cluster_health()
        except Exception as exc:  # the probe must answer, not crash
            self.stderr.write(f"workers_health: cannot read cluster state: {exc}")
            raise SystemExit(1) from None
        if options["local"]:
            host = socket.gethostname()
            clusters = [c for c in health["clusters"] if c["host"] == host]
            problems = [c for c in clusters if c["verdict"] in ("down", "stalled", "restarting")]
            health = {
                "ok": any(c["alive"] for c in clusters) and not problems,
                "clusters": clusters,
                "problems": [f"{c['name']}: {c['verdict']} ({c['reason']})" for c in problems]
                or ([] if any(c["alive"] for c in clusters) else [f"no cluster runs on {host}"]),
            }
        if options["json"]:
            self.stdout.write(json.dumps(health, cls=DjangoJSONEncoder))
        else:
            for c in health["clusters"]:
                progress = (
                    "never"
                    if c["progress_seconds"] is None
                    else f"{c['progress_seconds']:.0f}s ago"
                )
                self.stdout.write(
                    f"{c['name']:<32} {c['verdict']:<10} workers {c['workers']}  progress {progress}"
                    f"  ready {c['ready_waiting']}  restarts/h {c['restarts_last_hour']}"
                    + (f"  — {c['reason']}" if c["reason"] else "")
                )
            for problem in health["problems"]:
                self.stderr.write(f"problem: {problem}")
        raise SystemExit(0 if health["ok"] else 1)
