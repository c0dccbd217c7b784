"""The run's environment: signals that end it cleanly, the settings, tenants and products, clean-up between scenarios."""

from __future__ import annotations

import argparse
import contextlib
import signal
from typing import Any

from bench import harness
from bench.chaos.constants import TENANTS

_SIGNALLED: list[int] = []


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT end the run through ``finally`` blocks (stop every process, drop
    the database, stop PostgreSQL). The exception can be swallowed by a library it
    interrupts, so the signal is also remembered and every wait loop checks it."""

    def _stop(signum, frame):
        first = not _SIGNALLED
        _SIGNALLED.append(signum)
        if first:  # a second signal does not interrupt the clean-up the first one started
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def check_signalled() -> None:
    if _SIGNALLED:
        raise SystemExit(128 + _SIGNALLED[0])


def make_env(args: argparse.Namespace, database_url: str, sandbox_url: str) -> dict[str, str]:
    env = harness.cluster_env(database_url, workers=args.workers)
    for key in ("REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    env.update(
        SANDBOX_URL=sandbox_url,
        ORCHESTRATION_PROVIDER_MODULES="tests.engine_providers,bench.chaos.providers",
        ORCHESTRATION_RETRY_BASE_SECONDS=str(args.retry_base),
        ORCHESTRATION_RETRY_MAX_SECONDS=str(args.retry_max),
    )
    return env


def quiet() -> None:
    import logging
    import warnings

    for name in ("httpx", "orchestration", "django_tenants", "channels_postgres"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="No directory at")


def provision(env: dict[str, str]) -> dict[str, Any]:
    print("  migrate_schemas + seed_demo ...", flush=True)
    _, migrate_s = harness.manage("migrate_schemas", "--noinput", env=env)
    _, seed_s = harness.manage("seed_demo", env=env)
    print(f"  migrated in {migrate_s:.1f}s, demo tenants in {seed_s:.1f}s", flush=True)
    return {"migrate_schemas_s": round(migrate_s, 1), "seed_demo_s": round(seed_s, 1)}


def add_products(args: argparse.Namespace) -> dict[str, Any]:
    """Each demo tenant gets products up to the largest per-marketplace job count, cloned
    from its 32 fixtures under new SKUs (titles kept: valid on every marketplace)."""
    from django_tenants.utils import schema_context

    from marketplaces.models import Product

    wanted = max(args.ebay, args.etsy, args.vinted)
    added = {}
    for schema in TENANTS:
        with schema_context(schema):
            base = list(Product.objects.order_by("sku"))
            have = len(base)
            new = []
            for i in range(max(0, wanted - have)):
                src = base[i % len(base)]
                new.append(
                    Product(
                        sku=f"{src.sku}-X{i:04d}",
                        title=src.title,
                        description=src.description,
                        price=src.price,
                        currency=src.currency,
                        quantity=src.quantity,
                        brand=src.brand,
                        size=src.size,
                        condition=src.condition,
                        category=src.category,
                        images=list(src.images),
                    )
                )
            Product.objects.bulk_create(new)
            added[schema] = {"fixtures": have, "added": len(new)}
    return {"products": added}


def settle_leftovers() -> None:
    """Jobs a failed scenario left unsettled are cancelled, so the next one starts clean."""
    from django.db import connections
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceJob
    from orchestration.services import jobs_cancel
    from orchestration.states import JOB_TERMINAL

    connections.close_all()
    with contextlib.suppress(Exception):
        for schema in TENANTS:
            with schema_context(schema):
                open_jobs = MarketplaceJob.objects.exclude(status__in=list(JOB_TERMINAL))
                if open_jobs.exists():
                    jobs_cancel(queryset=open_jobs)
