"""Planning scenarios: the demo history (one category, to stay quick) committed into the
active test tenant, plan jobs run through the engine in this process, and the sandbox."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from orchestration.models import MarketplaceJob
from orchestration.services import run_available_jobs
from planning.services import FIXTURES_DIR, history_import

# The marketplace tests' sandbox process and client (a real server over HTTP).
from tests.integration.marketplaces.conftest import (  # noqa: F401
    accounts,
    product,
    sandbox,
    sandbox_http,
    sandbox_process,
)

CATEGORY = "Jackets"


def demo_history(fixture: str = "acme", categories: tuple[str, ...] = (CATEGORY,)) -> dict:
    """Import the demo stores and the rows of ``categories`` into the current tenant."""
    lines = (FIXTURES_DIR / f"{fixture}_sales.csv").read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[3] in categories]
    stores = (FIXTURES_DIR / f"{fixture}_stores.csv").read_text()
    return history_import(stores=stores, sales="\n".join(keep))


@pytest.fixture
def history(tx_tenant_a):
    """Tenant alpha with the acme Jackets history, committed (steps read it on the engine's
    step thread, through a connection of their own)."""
    demo_history()
    return tx_tenant_a


def run_until_finished(job_ids, *, timeout: float = 60) -> None:
    """Run queued work in this process until every job has finished. A resource's start
    rate (Etsy: one a second) may hold jobs back between rounds: wait, don't fail."""
    deadline = time.monotonic() + timeout
    while True:
        run_available_jobs()
        waiting = MarketplaceJob.objects.filter(
            pk__in=list(job_ids), status__in=["pending", "queued", "retrying", "running"]
        )
        if not waiting.exists():
            return
        assert time.monotonic() < deadline, list(waiting.values_list("pk", "status"))
        time.sleep(0.2)


def run_plan(job_id: int, *, rounds: int = 10) -> MarketplaceJob:
    """Run queued work in this process until the plan job has finished (or stopped moving)."""
    job = MarketplaceJob.objects.get(pk=job_id)
    for _ in range(rounds):
        run_available_jobs()
        job.refresh_from_db()
        if job.status not in ("queued", "retrying", "running"):
            break
    return job


class Api:
    """The JSON API on alpha.localhost with a Bearer token."""

    def __init__(self, *, token: str):
        self.client = Client(HTTP_HOST="alpha.localhost", HTTP_AUTHORIZATION=f"Bearer {token}")

    def post(self, path: str, body: dict):
        return self.client.post(path, body, content_type="application/json")

    def get(self, path: str):
        return self.client.get(path)
