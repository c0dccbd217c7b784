"""The tenant with its staff user, and quieter logs."""

from __future__ import annotations

from bench import harness
from bench.live_admin.constants import DOMAIN, PASSWORD, SCHEMA, USERNAME
from bench.live_admin.load import LOAD_SCHEMA


def quiet() -> None:
    import logging
    import warnings

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    # WhiteNoise serves from the finders; STATIC_ROOT is never collected here.
    warnings.filterwarnings("ignore", message="No directory at")


def provision(env: dict[str, str], *, load: bool = False) -> dict[str, float]:
    migrate_s = harness.migrate(env)
    tenant_s = harness.create_tenant_with_staff(
        SCHEMA, DOMAIN, username=USERNAME, password=PASSWORD, env=env
    )
    print(f"  migrated in {migrate_s:.1f}s, tenant '{SCHEMA}' with staff in {tenant_s:.1f}s")
    out = {"migrate_schemas_s": round(migrate_s, 2), "create_tenant_s": tenant_s}
    if load:  # the second tenant, for the load's no-op jobs
        out["create_load_tenant_s"] = harness.create_tenants([LOAD_SCHEMA], env=env)[LOAD_SCHEMA]
    return out
