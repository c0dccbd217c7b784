"""A cancel that arrives while a job's last step runs: the job completes and the flag goes.

The staff pages read ``cancel_requested`` to say a cancel is pending; left set on a finished
job it said "cancel requested (stops at the next step boundary)" for ever (issue 11).
"""

import threading

from django.db import connection
from django_tenants.utils import schema_context

import tests.engine_providers  # noqa: F401  (registers the "testmkt" provider)
from orchestration.engine import finish as finish_module
from orchestration.models import MarketplaceJob
from orchestration.services import job_create, job_execute_now, jobs_cancel
from tests.engine_providers import MARKETPLACE


def test_a_cancel_during_the_last_step_ends_completed_without_the_flag(
    tx_tenant_a, tmp_path, monkeypatch
):
    schema = tx_tenant_a.schema_name
    job = job_create(marketplace=MARKETPLACE, action="one", params={"ledger": str(tmp_path / "l")})
    original = finish_module.finish_completed
    outcome: dict = {}

    def cancel_then_finish(claim, outputs, last=None, **kwargs):
        # The last step ran, its commit (which ends the job) not made yet: staff press Cancel now.
        def cancel():
            try:
                with schema_context(schema):
                    outcome["n"] = jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job.pk))
            finally:
                connection.close()

        thread = threading.Thread(target=cancel)
        thread.start()
        thread.join(10)
        assert MarketplaceJob.objects.get(pk=job.pk).cancel_requested
        return original(claim, outputs, last, **kwargs)

    monkeypatch.setattr(finish_module, "finish_completed", cancel_then_finish)
    assert job_execute_now(job_id=job.pk) == "completed"
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("completed", False)
