"""Lock order of a job's finish: the tenant's queue row before the batch row.

The failure, cancel and recovery paths lock the queue row (running count) before the
batch row (counters). If finishing a completed job took them the other way round, a
job of a batch completing in one worker while another job of the same batch fails in
another would deadlock. The finish is one statement, so the order is checked from
outside: while another session holds the queue row, the blocked finish must not hold
the batch row yet.
"""

import threading
import time

import psycopg
from django.db import connection
from django_tenants.utils import schema_context

from orchestration.models import Batch
from orchestration.services import JobSpec, batch_create
from orchestration.services.runner import _finish_completed, claim_jobs
from tests.engine_providers import MARKETPLACE


def _session() -> psycopg.Connection:
    """A plain session on the test database, outside Django."""
    settings = connection.settings_dict
    params = {"dbname": settings["NAME"], "user": settings["USER"], "host": settings["HOST"]}
    if settings["PORT"]:
        params["port"] = settings["PORT"]
    if settings["PASSWORD"]:
        params["password"] = settings["PASSWORD"]
    return psycopg.connect(psycopg.conninfo.make_conninfo(**params))


def test_finishing_a_job_locks_the_queue_row_before_the_batch_row(tx_tenant_a):
    schema = tx_tenant_a.schema_name
    batch = batch_create(name="order", jobs=[JobSpec(marketplace=MARKETPLACE, action="one")] * 2)
    (claim,) = claim_jobs(limit=1)

    holder, prober = _session(), _session()
    outcome: dict[str, object] = {}
    try:
        holder.execute(
            "SELECT 1 FROM public.tenants_tenantqueue WHERE schema_name = %s FOR UPDATE", [schema]
        )

        def finish() -> None:
            try:
                with schema_context(schema):
                    outcome["status"] = _finish_completed(claim, {})
            except Exception as exc:  # reported below
                outcome["error"] = exc
            finally:
                connection.close()

        worker = threading.Thread(target=finish)
        worker.start()
        deadline = time.monotonic() + 10
        waiting = False
        while time.monotonic() < deadline and not waiting:
            time.sleep(0.05)
            (count,) = prober.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE %s",
                ["%SET status = 'completed', finished_at%"],  # (the text is cut at 1 kB)
            ).fetchone() or (0,)
            prober.rollback()
            waiting = count > 0
        assert waiting, f"the finish never waited for the queue row: {outcome}"
        # It waits on the queue row: the batch row must still be free.
        with prober.transaction():
            prober.execute(f'SET LOCAL search_path TO "{schema}", public')
            locked = prober.execute(
                "SELECT id FROM orchestration_batch WHERE id = %s FOR UPDATE NOWAIT", [batch.pk]
            ).fetchone()
        assert locked == (batch.pk,)
    finally:
        holder.rollback()  # releases the queue row; the finish goes on
        holder.close()
        prober.close()
    worker.join(10)
    assert not worker.is_alive()
    assert outcome.get("status") == "completed", outcome
    assert Batch.objects.get(pk=batch.pk).completed_jobs == 1
