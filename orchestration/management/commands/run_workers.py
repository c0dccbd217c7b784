from django.core.management.base import BaseCommand

from orchestration.watchdog import Watchdog, WatchdogConfig


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster under a watchdog that runs the recovery sweep itself and "
        "restarts the cluster (its whole process group) when it exits or stalls. What a "
        "process manager (systemd, Kubernetes) should run; `workers_health` is its liveness check."
    )

    def add_arguments(self, parser):
        defaults = WatchdogConfig()
        parser.add_argument("--workers", type=int, help="django-q2 workers (default: Q_WORKERS)")
        parser.add_argument("--stall-seconds", type=float, default=defaults.stall,
                            help="restart when a drain waits this long with no progress")  # fmt: skip
        parser.add_argument("--sweep-seconds", type=float, default=defaults.sweep,
                            help="run the recovery sweep this often")  # fmt: skip
        parser.add_argument("--stop-grace", type=float, default=defaults.stop_grace,
                            help="seconds between SIGTERM and SIGKILL when stopping")  # fmt: skip

    def handle(self, *args, **options):
        for name in ("workers", "stall_seconds", "sweep_seconds", "stop_grace"):
            value = options[name]
            if value is not None and value <= 0:
                self.stderr.write(f"--{name.replace('_', '-')} must be positive, got {value}")
                raise SystemExit(2)
        config = WatchdogConfig(
            stall=options["stall_seconds"], sweep=options["sweep_seconds"],
            stop_grace=options["stop_grace"], workers=options["workers"],
        )  # fmt: skip
        raise SystemExit(Watchdog(config).run())
