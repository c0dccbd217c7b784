"""The CLI doors: same services, clear errors, non-zero exit on bad input, --json."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestration.models import MarketplaceJob
from orchestration.services import job_create, job_execute_now
from tests.engine_providers import BRIDGE, MARKETPLACE, set_faults
from tests.factories import ProductFactory


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_status_json_reports_queue_depth_per_resource(engine):
    job_create(marketplace=BRIDGE, action="one", params=engine.params())
    job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    payload = json.loads(_call("jobs_status", "--tenant", "test_alpha", "--json"))
    by_key = {r["resource"]: r for r in payload["resources"]}
    assert by_key["testbridge"]["queued"] == 1 and by_key["testbridge"]["concurrency"] == 1
    assert by_key["testmkt"]["queued"] == 1


def test_retry_all_failed_and_cancel_via_the_cli(engine):
    set_faults(engine.faults, {"only": {"mode": "permanent", "times": 1}})
    failed = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    job_execute_now(job_id=failed.pk)
    assert "retried 1 job(s)" in _call("jobs_retry", "--tenant", "test_alpha", "--all-failed")
    assert MarketplaceJob.objects.get(pk=failed.pk).status == "queued"
    assert "cancelled or stopping 1" in _call(
        "jobs_cancel", "--tenant", "test_alpha", str(failed.pk)
    )
    assert MarketplaceJob.objects.get(pk=failed.pk).status == "cancelled"


def test_publish_creates_a_batch_for_the_given_skus(engine):
    ProductFactory(sku="CLI-1")
    ProductFactory(sku="CLI-2")
    payload = json.loads(
        _call("publish", "--tenant", "test_alpha", "--marketplace", MARKETPLACE, "--action", "one",
              "--sku", "CLI-1", "--sku", "CLI-2", "--json")
    )  # fmt: skip
    assert payload["jobs"] == 2
    assert sorted(MarketplaceJob.objects.filter(batch_id=payload["batch"]).values_list("sku", flat=True)) == [
        "CLI-1", "CLI-2",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["jobs_status", "--tenant", "nobody"], "unknown tenant 'nobody'"),
        (["publish", "--tenant", "test_alpha", "--marketplace", "amazon"], "no step provider for marketplace 'amazon'"),
        (["publish", "--tenant", "test_alpha", "--marketplace", "testmkt", "--action", "one", "--sku", "NOPE"],
         "unknown SKU(s): NOPE"),
        (["jobs_retry", "--tenant", "test_alpha"], "give job ids or --all-failed"),
        (["jobs_cancel", "--tenant", "test_alpha", "--batch", "999999"], "no batch 999999"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error_and_changes_nothing(engine, args, message):
    before = MarketplaceJob.objects.count()
    with pytest.raises(CommandError) as excinfo:
        call_command(*args, stdout=StringIO())
    assert message in str(excinfo.value)
    assert MarketplaceJob.objects.count() == before
