import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Publishing jobs"

    def ready(self) -> None:
        import importlib

        from django.conf import settings
        from django_q.signals import post_execute_in_worker, post_spawn

        # Extra step providers (plugins; tests use it to load theirs in worker processes).
        for module in getattr(settings, "ORCHESTRATION_PROVIDER_MODULES", []):
            importlib.import_module(module)
        from orchestration import live  # noqa: F401

        post_spawn.connect(_sweep_at_worker_start, dispatch_uid="orchestration-sweep-at-start")
        post_execute_in_worker.connect(_back_to_public, dispatch_uid="orchestration-back-to-public")


def _sweep_at_worker_start(sender, proc_name, **kwargs) -> None:
    # Recovery also runs when a worker starts (a crashed cluster restarting). Enqueue
    # rather than run: an exception here would kill the worker being spawned.
    try:
        from orchestration.engine.slots import register_worker_cluster

        register_worker_cluster()  # this cluster's workers count in the drain slots
    except Exception:
        logger.exception("could not register this worker's cluster")
    try:
        from django_q.tasks import async_task

        # The quick pass: runs and drain slots of workers that are gone, drains for due work.
        # Lost wake-ups are the slow pass's (the watchdog's, every 15 s; q2's schedule), which
        # with many tenants would hold this new worker for a second or more.
        async_task("orchestration.tasks.sweep", reconcile=False)
    except Exception:
        logger.exception("could not enqueue the recovery sweep at worker start")


def _back_to_public(sender, func=None, task=None, **kwargs) -> None:
    # Safety net (PITFALLS): never let a task's schema leak into the worker's next task.
    try:
        from tenants.db import use_public_schema

        use_public_schema()
    except Exception:
        logger.exception("could not reset the worker's schema")
