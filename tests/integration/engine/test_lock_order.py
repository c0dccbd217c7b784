"""Lock order: job rows, then the tenant's queue row, then the batch row.

A worker finishing a job locks its run, its job, the tenant's queue row (running count)
and the batch row (counters); the failure, cancel and recovery paths take them in the
same order. Two paths taking two of them the other way round deadlock under load (a job
of a batch completing while another fails, or while staff cancel the batch). The order
is checked from outside: while another session holds the first lock, the blocked call
must not hold the second yet.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
from django.db import connection
from django_tenants.utils import schema_context

from orchestration.engine.advance import task_start
from orchestration.engine.claims import claim_jobs
from orchestration.engine.finish import finish_completed
from orchestration.models import Batch, MarketplaceJob
from orchestration.services import JobSpec, batch_cancel, batch_create, jobs_cancel
from tests.engine_providers import MARKETPLACE
from tests.helpers import plain_session


def _session() -> psycopg.Connection:
    """A plain session on the test database, outside Django."""
    return plain_session(connection.settings_dict)


@contextlib.contextmanager
def _blocked(
    schema: str, hold: tuple[str, list], call: Callable[[], object], waiting_query: str
) -> Iterator[tuple[psycopg.Connection, dict]]:
    """Hold a row lock in another session, start ``call`` in a thread and wait until it
    waits for that lock; yield (a probing session, the call's outcome); then release.

    "Waits for that lock" is asked of the call's own backend (its pid) and of the holder
    (``pg_blocking_pids``): another session waiting on the server proves nothing."""
    holder, prober = _session(), _session()
    outcome: dict[str, object] = {}
    backend = threading.Event()

    def run() -> None:
        try:
            with schema_context(schema):
                connection.ensure_connection()
                outcome["pid"] = connection.connection.info.backend_pid
                backend.set()
                outcome["result"] = call()
        except Exception as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            backend.set()
            connection.close()

    worker = threading.Thread(target=run)
    try:
        holder.execute(f'SET search_path TO "{schema}", public')
        holder.execute(*hold)
        worker.start()
        assert backend.wait(10) and "pid" in outcome, outcome
        deadline, waiting = time.monotonic() + 10, False
        while time.monotonic() < deadline and not waiting:
            time.sleep(0.05)
            (count,) = prober.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
                " AND wait_event_type = 'Lock' AND query LIKE %s"
                " AND %s = ANY(pg_blocking_pids(pid))",
                [outcome["pid"], waiting_query, holder.info.backend_pid],
            ).fetchone() or (0,)
            prober.rollback()
            waiting = count > 0
        assert waiting, f"the call never waited for the held lock: {outcome}"
        yield prober, outcome
    finally:
        holder.rollback()  # the call goes on
        holder.close()
        worker.join(10)
        prober.close()
    assert not worker.is_alive()


def _lock_now(prober: psycopg.Connection, schema: str, table: str, pk: int) -> bool:
    """Whether the row can be locked right now (nobody holds it)."""
    try:
        with prober.transaction():
            prober.execute(f'SET LOCAL search_path TO "{schema}", public')
            prober.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [pk])
        return True
    except psycopg.errors.LockNotAvailable:
        return False


def test_finishing_a_job_locks_the_queue_row_before_the_batch_row(tx_tenant_a):
    schema = tx_tenant_a.schema_name
    batch = batch_create(name="order", jobs=[JobSpec(marketplace=MARKETPLACE, action="one")] * 2)
    (claim,) = claim_jobs(limit=1)
    (task,) = claim.tasks
    task_start(claim, task, {}, first_write=True)
    hold = ("SELECT 1 FROM public.tenants_tenantqueue WHERE schema_name = %s FOR UPDATE", [schema])
    # The job's last step and its end: one statement.
    finish = lambda: finish_completed(claim, {}, (task, {}, False))  # noqa: E731
    # (the statement's text is cut at 1 kB in pg_stat_activity: match its start)
    with _blocked(schema, hold, finish, "%SET status = 'completed', finished_at%") as (probe, out):
        assert _lock_now(probe, schema, "orchestration_batch", batch.pk), "batch locked first"
    assert out.get("result") == "completed", out
    assert Batch.objects.get(pk=batch.pk).completed_jobs == 1


def test_cancelling_a_batch_locks_its_running_jobs_before_the_batch_row(tx_tenant_a):
    schema = tx_tenant_a.schema_name
    batch = batch_create(name="order", jobs=[JobSpec(marketplace=MARKETPLACE, action="one")] * 2)
    (claim,) = claim_jobs(limit=1)  # running: a worker finishing it holds its row
    hold = ("SELECT 1 FROM orchestration_marketplacejob WHERE id = %s FOR UPDATE", [claim.job_id])
    cancel = lambda: batch_cancel(batch_id=batch.pk)  # noqa: E731
    with _blocked(schema, hold, cancel, "%orchestration_marketplacejob%") as (
        probe,
        out,
    ):
        assert _lock_now(probe, schema, "orchestration_batch", batch.pk), "batch locked first"
    assert "error" not in out, out
    assert Batch.objects.get(pk=batch.pk).status == "cancelled"
    assert MarketplaceJob.objects.get(pk=claim.job_id).cancel_requested


def test_bulk_cancel_flags_running_jobs_before_moving_batch_counters(tx_tenant_a):
    schema = tx_tenant_a.schema_name
    batch = batch_create(name="order", jobs=[JobSpec(marketplace=MARKETPLACE, action="one")] * 2)
    (claim,) = claim_jobs(limit=1)  # running; the other job is queued (cancelled at once)
    hold = ("SELECT 1 FROM orchestration_marketplacejob WHERE id = %s FOR UPDATE", [claim.job_id])
    cancel = lambda: jobs_cancel(queryset=MarketplaceJob.objects.all())  # noqa: E731
    with _blocked(schema, hold, cancel, "%orchestration_marketplacejob%") as (probe, out):
        assert _lock_now(probe, schema, "orchestration_batch", batch.pk), "batch locked first"
    assert out.get("result") == 2, out
    assert Batch.objects.get(pk=batch.pk).cancelled_jobs == 1
