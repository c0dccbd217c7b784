"""At most one running job per concurrency key (by default: the product on the marketplace),
enforced at claim time like a resource limit, also between workers racing (review defect 10)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django_tenants.utils import schema_context

import tests.engine_providers  # noqa: F401  (registers the "testmkt" provider)
from orchestration import steps
from orchestration.engine.claims import claim_jobs
from orchestration.engine.execute import execute_claim
from orchestration.models import MarketplaceJob
from orchestration.services import job_create
from tests.engine_providers import MARKETPLACE
from tests.factories import ProductFactory


def _jobs_for_one_product(tmp_path, count: int = 2) -> list[MarketplaceJob]:
    product = ProductFactory()
    params = {"ledger": str(tmp_path / "ledger.jsonl")}
    return [
        job_create(marketplace=MARKETPLACE, action="one", product_id=product.pk, params=params)
        for _ in range(count)
    ]


def test_jobs_get_the_product_on_the_marketplace_as_their_key(tenant_a, tmp_path):
    job, _ = _jobs_for_one_product(tmp_path)
    assert job.concurrency_key == f"{MARKETPLACE}:product:{job.product_id}"
    loose = job_create(marketplace=MARKETPLACE, action="one")
    assert loose.concurrency_key == ""  # no product, no sku: no such limit


def test_a_provider_may_declare_its_own_key(tenant_a, monkeypatch):
    provider = steps.get_provider(MARKETPLACE)
    monkeypatch.setattr(
        provider, "concurrency_key", lambda *, product_id, sku, params: f"shop:{params['shop']}",
        raising=False,
    )  # fmt: skip
    job = job_create(marketplace=MARKETPLACE, action="one", params={"shop": "7"})
    assert job.concurrency_key == "shop:7"


def test_one_claim_takes_one_job_per_key_and_the_next_waits_for_it(tenant_a, tmp_path):
    first, second = _jobs_for_one_product(tmp_path)
    other = job_create(marketplace=MARKETPLACE, action="one", params={})

    claimed = claim_jobs(limit=3)
    assert [c.job_id for c in claimed] == [first.pk, other.pk]
    assert claim_jobs(limit=3) == []  # the second waits while the first runs

    assert execute_claim(claimed[0]) == "completed"
    (nxt,) = claim_jobs(limit=3)
    assert nxt.job_id == second.pk


def test_two_workers_racing_never_start_two_jobs_of_one_key(tx_tenant_a, tmp_path):
    """N sessions released together by a barrier, each claiming one job: exactly one of the
    same-key jobs starts."""
    from orchestration.engine.claims import resource_policies

    schema = tx_tenant_a.schema_name
    jobs = _jobs_for_one_product(tmp_path, count=4)
    resource_policies()
    barrier = threading.Barrier(len(jobs))
    results: list = []
    errors: list = []

    def worker() -> None:
        try:
            with schema_context(schema):
                barrier.wait(timeout=10)
                results.append(claim_jobs(limit=1))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    started = [claim for claimed in results for claim in claimed]
    assert len(started) == 1, started
    assert MarketplaceJob.objects.filter(status="running").count() == 1


def test_a_claim_racing_another_between_its_check_and_commit_waits_for_the_key(
    tx_tenant_a, tmp_path, monkeypatch
):
    """Deterministic race: a second worker claims right after the first read the key's
    running jobs and before it commits. It must wait and then see the key taken."""
    from orchestration.engine import claims

    schema = tx_tenant_a.schema_name
    first, _second = _jobs_for_one_product(tmp_path)
    claims.resource_policies()  # committed: the claims do not serialise on creating them
    original = claims._free_keys
    other: dict = {}

    def claim_in_between(*args, **kwargs):
        result = original(*args, **kwargs)
        if not other:
            other["outcome"] = outcome = {}

            def run() -> None:
                try:
                    with schema_context(schema):
                        outcome["claimed"] = claim_jobs(limit=1)
                finally:
                    connection.close()

            other["thread"] = thread = threading.Thread(target=run)
            thread.start()
            thread.join(1.0)
            other["blocked"] = thread.is_alive()
        return result

    monkeypatch.setattr(claims, "_free_keys", claim_in_between)
    (claim,) = claim_jobs(limit=1)
    other["thread"].join(10)
    assert claim.job_id == first.pk
    assert other["blocked"], "the other claim did not wait for the key"
    assert other["outcome"]["claimed"] == []
    assert MarketplaceJob.objects.filter(status="running").count() == 1


@pytest.mark.parametrize("limit", [1, 32])
def test_a_backlog_of_one_key_does_not_hide_other_work(tenant_a, tmp_path, limit):
    _jobs_for_one_product(tmp_path, count=40)
    loose = job_create(marketplace=MARKETPLACE, action="one", params={})
    first = claim_jobs(limit=limit)
    rest = claim_jobs(limit=limit) if limit == 1 else []
    ids = [c.job_id for c in first + rest]
    assert loose.pk in ids and len(ids) == 2
