"""A claim whose candidate loses its resource's last place to another worker goes on.

The claim reads every resource's room, picks candidates, then locks the candidates'
policy rows and counts again. If another worker took the last place in between, the
candidate is rejected; the claim must then look further (another resource's job may
start) instead of coming back empty, which would mark the tenant idle with work waiting.
"""

from orchestration.engine import claims
from orchestration.engine.claims import claim_jobs
from orchestration.models import MarketplaceJob
from orchestration.services import job_create
from tests.engine_providers import BRIDGE, MARKETPLACE
from tests.integration.engine.test_lock_order import _session


def test_a_claim_that_loses_a_resource_race_takes_another_resources_job(tx_tenant_a, monkeypatch):
    schema = tx_tenant_a.schema_name
    first_bridge = job_create(marketplace=BRIDGE, action="one")
    other_bridge = job_create(marketplace=BRIDGE, action="one")
    other_resource = job_create(marketplace=MARKETPLACE, action="one")
    claims.resource_policies()  # (so the claim's first count is the one raced below)
    real_rooms = claims._rooms
    raced = []

    def rooms_then_another_worker_starts_a_bridge_job(now, keys=None):
        result = real_rooms(now, keys)
        if not raced:  # between the first count and the re-count: another worker's claim
            raced.append(True)
            with _session() as other:
                other.execute(f'SET search_path TO "{schema}", public')
                other.execute(
                    "UPDATE orchestration_marketplacejob SET status = 'running' WHERE id = %s",
                    [other_bridge.pk],
                )
        return result

    monkeypatch.setattr(claims, "_rooms", rooms_then_another_worker_starts_a_bridge_job)
    claimed = claim_jobs(limit=1)
    assert raced
    # The bridge (one at a time) is now busy: its first job must wait; the other resource's
    # job starts instead of the claim coming back empty.
    assert [c.job_id for c in claimed] == [other_resource.pk]
    assert MarketplaceJob.objects.get(pk=first_bridge.pk).status == "queued"
