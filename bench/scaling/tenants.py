"""Many tenants, quickly: one real tenant (``create_tenant``) cloned in SQL.

``create_tenant`` migrates a schema (about 10 s each here): 1,000 of them would take hours.
The clones copy the template's tables (``CREATE TABLE … (LIKE … INCLUDING ALL)``: columns,
defaults, identity, indexes, constraints except foreign keys) and rows, and get ``Tenant``
and ``Domain`` rows as ``create_tenant`` makes them. Foreign keys are left out (nothing here
deletes); the engine reads and writes the same tables and indexes as in a migrated schema.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness
from bench.scaling.constants import TEMPLATE, TENANT_PREFIX

CLONES_PER_TRANSACTION = 5

CLONE_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.bench_clone(src text, dst text) RETURNS void AS $$
DECLARE r record; m bigint;
BEGIN
  EXECUTE format('CREATE SCHEMA %I', dst);
  FOR r IN SELECT c.relname AS t,
                  (SELECT a.attname FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attidentity <> '' LIMIT 1) AS idcol
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = src AND c.relkind IN ('r', 'p') LOOP
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING ALL)', dst, r.t, src, r.t);
    EXECUTE format('INSERT INTO %I.%I OVERRIDING SYSTEM VALUE SELECT * FROM %I.%I',
                   dst, r.t, src, r.t);
    IF r.idcol IS NOT NULL THEN
      EXECUTE format('SELECT coalesce(max(%I), 0) + 1 FROM %I.%I', r.idcol, src, r.t) INTO m;
      IF m > 1 THEN
        EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN %I RESTART WITH %s',
                       dst, r.t, r.idcol, m);
      END IF;
    END IF;
  END LOOP;
END $$ LANGUAGE plpgsql;
"""


def tenant_schemas(count: int) -> list[str]:
    return [f"{TENANT_PREFIX}{i:04d}" for i in range(count)]


def create_many(count: int, env: dict[str, str], url: str) -> dict[str, Any]:
    """``count`` tenants ``t0000`` … : the first by ``create_tenant``, the rest cloned."""
    from tenants.models import Domain, Tenant

    schemas = tenant_schemas(count)
    print(f"  tenants: {TEMPLATE} by create_tenant, {count - 1} clones ...", flush=True)
    template_s = harness.create_tenants([TEMPLATE], env=env)[TEMPLATE]
    started = time.perf_counter()
    conn = harness.connect(url)
    try:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (TEMPLATE,)
        ).fetchone()[0]
        progress = harness.Progress("tenants cloned", count - 1)
        conn.execute(CLONE_SQL)
        # A few schemas per transaction: each holds ~150 locks (tables, indexes, sequences)
        # until its commit; 100 at once exhaust max_locks_per_transaction.
        for start in range(1, count, CLONES_PER_TRANSACTION):
            with conn.transaction():
                for schema in schemas[start : start + CLONES_PER_TRANSACTION]:
                    conn.execute("SELECT pg_temp.bench_clone(%s, %s)", (TEMPLATE, schema))
            progress.update(min(start + CLONES_PER_TRANSACTION - 1, count - 1))
        progress.close()
    finally:
        conn.close()
    Tenant.objects.bulk_create(
        [Tenant(schema_name=s, name=s.title()) for s in schemas[1:]], batch_size=500
    )
    tenants = {t.schema_name: t for t in Tenant.objects.filter(schema_name__in=schemas[1:])}
    Domain.objects.bulk_create(
        [Domain(domain=f"{s}.localhost", tenant=tenants[s], is_primary=True) for s in schemas[1:]],
        batch_size=500,
    )
    clone_s = round(time.perf_counter() - started, 1)
    print(f"  {count - 1} clones of {tables} tables each in {clone_s}s")
    return {
        "tenants": count,
        "template": TEMPLATE,
        "create_template_s": template_s,
        "clones": count - 1,
        "tables_per_schema": tables,
        "clone_s": clone_s,
        "how": "create_tenant once, then CREATE TABLE (LIKE ... INCLUDING ALL) + rows per "
        "schema (no foreign keys), Tenant and Domain rows",
    }


def time_sweeps(tenants: int, passes: int = 3) -> dict[str, Any]:
    """Seconds of one slow sweep pass (``sweep_all_tenants(reconcile=True)``, what the
    watchdog runs every 15 s) with every tenant idle: as shipped (``SWEEP_TENANTS``, those
    visited least recently) and visiting all ``tenants`` at once (before the slice), in this
    process's connection. One untimed pass over every tenant first: a watchdog's
    long-lived connection has each schema's catalog entries cached (a first statement
    against a schema costs more). Then ``passes`` of each, alternating; medians."""
    import statistics

    from django.test import override_settings

    from orchestration import conf
    from orchestration.engine.recovery import sweep_all_tenants

    def seconds(**overrides: int) -> float:
        with override_settings(ORCHESTRATION=overrides):
            started = time.perf_counter()
            sweep_all_tenants(reconcile=True)
            return time.perf_counter() - started

    every = {"SWEEP_TENANTS": tenants + 1}
    warm_up = seconds(**every)
    sliced, whole = [], []
    for _ in range(passes):
        sliced.append(seconds())
        whole.append(seconds(**every))
    return {
        "tenants": tenants,
        "sweep_tenants": int(conf.get("SWEEP_TENANTS")),
        "slow_pass_s": round(statistics.median(sliced), 3),
        "slow_pass_all_tenants_s": round(statistics.median(whole), 3),
        "first_pass_all_tenants_s": round(warm_up, 3),  # cold: every schema new to it
        "passes": passes,
    }
