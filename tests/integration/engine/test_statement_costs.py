"""A step's and a job's end statements read their own job's rows, however long the tenant's
history: the runner's statements run with generic plans (``plan_cache_mode =
force_generic_plan``, planned once per connection), so a plan chosen while a table was
small or its statistics stale stays for the connection's life. Found by the throughput
benchmark (issue 17): each job's end counted its run's steps through a bitmap AND with the
index of every completed task, so a job's end cost grew with every task the tenant ever
completed (1.2-1.8 ms per job at 30,000 tasks).

Counted with ``pg_stat_get_xact_tuples_returned`` (index entries read in this transaction): deterministic,
no timing.
"""

from django.db import connection

from orchestration.engine.session import tune_worker_session
from orchestration.models import JobRun, MarketplaceTask
from orchestration.services import batch_create, job_execute_now
from orchestration.states import JobStatus, TaskStatus
from tests.engine_providers import set_faults

HISTORY_JOBS = 400  # x 5 steps: 2,000 completed tasks of earlier jobs
# Task index entries one 5-step job may read: its own 5 tasks a few times per statement. The
# plans depend on the statistics earlier tests left: on near-empty ones a job read about 110.
READS_BOUND = 200


def _task_index_reads() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_stat_get_xact_tuples_returned(i.indexrelid) "
            "FROM pg_index i WHERE i.indrelid = %s::regclass",
            [MarketplaceTask._meta.db_table],
        )
        return dict(cursor.fetchall())


def _run_after_history(engine, *, expect: str) -> dict[str, int]:
    """Index entries of the task table read while one job runs in a drain's session, after
    2,000 tasks of other jobs completed."""
    # The worst case, whatever earlier tests left: statistics taken while the table was empty
    # (a CI run failed on the failure path with the ones it happened to have).
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {MarketplaceTask._meta.db_table}")
    history = batch_create(
        name="history", jobs=[engine.spec() for _ in range(HISTORY_JOBS)], start=False
    )
    # By job ids, not through a join: with those statistics a join of the task and job tables
    # planned as a nested loop of full scans (minutes in a busy CI run).
    history_jobs = list(history.jobs.values_list("pk", flat=True))
    MarketplaceTask.objects.filter(job_id__in=history_jobs).update(status=TaskStatus.COMPLETED)
    assert MarketplaceTask.objects.filter(status=TaskStatus.COMPLETED).count() == 5 * HISTORY_JOBS
    job = batch_create(name="now", jobs=[engine.spec(max_retries=0)]).jobs.get()
    tune_worker_session()  # the drains' session: generic plans
    try:
        before = _task_index_reads()
        assert job_execute_now(job_id=job.pk) == expect
        after = _task_index_reads()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit; RESET plan_cache_mode")
    return {name: after.get(name, 0) - before.get(name, 0) for name in after}


def test_a_job_end_reads_only_its_own_tasks_however_many_completed_before(engine):
    reads = _run_after_history(engine, expect=JobStatus.COMPLETED)
    # Claiming, starting, advancing and ending one 5-step job (READS_BOUND).
    assert sum(reads.values()) < READS_BOUND, reads


def test_a_failed_run_counts_its_steps_among_its_own_tasks(engine):
    set_faults(engine.faults, {"step4": {"mode": "permanent", "times": 1}})
    reads = _run_after_history(engine, expect=JobStatus.FAILED)
    assert sum(reads.values()) < READS_BOUND, reads
    assert JobRun.objects.get(job__batch__name="now").steps_completed == 3
