"""Webhooks end to end (seed 002's E2E-WEBHOOK): real workers (a django-q2 cluster in a
subprocess) deliver to a real local HTTP receiver. Where the watchdog would sweep, the
tests enqueue the sweep in the cluster (what its q2 schedule does every minute)."""

from __future__ import annotations

import os
import signal
from collections import defaultdict

import pytest
from django_q.tasks import async_task

from orchestration.models import Batch, JobRun, MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_create
from tests.e2e.conftest import wait_for
from tests.engine_providers import MARKETPLACE, set_faults
from tests.integration.webhooks.receiver import Receiver, free_port
from tests.integration.webhooks.test_delivery import receiver_verifies
from webhooks import services
from webhooks.models import WebhookDelivery

ENGINE = {"RETRY_BASE_SECONDS": 0.05, "RETRY_MAX_SECONDS": 0.2, "DRAIN_SECONDS": 5}
HOOKS = {"RETRY_BASE_SECONDS": 0.2, "RETRY_MAX_SECONDS": 1, "LEASE_SECONDS": 3, "TIMEOUT": 5}


@pytest.fixture
def workers(monkeypatch, start_cluster):
    """Start ``run_workers`` with short webhook backoffs and leases (environment variables
    the worker processes read)."""
    from webhooks.delivery import close_clients

    for key, value in HOOKS.items():
        monkeypatch.setenv(f"WEBHOOKS_{key}", str(value))
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE_URLS", "true")

    def start():
        return start_cluster(workers=2, **ENGINE)

    yield start
    close_clients()


def _params(path, name):
    return {"ledger": str(path / f"{name}.jsonl"), "faults": str(path / f"{name}-faults.json")}


def _all_delivered(count: int, timeout=90, *, sweep=False):
    """Wait until ``count`` deliveries exist and every one is delivered."""

    def done():
        rows = WebhookDelivery.objects
        if rows.count() == count and not rows.exclude(status="delivered").exists():
            return True
        if sweep:
            async_task("orchestration.tasks.sweep")
        return False

    wait_for(done, timeout=timeout, interval=1.0 if sweep else 0.1,
             what=f"{count} webhook deliveries to be delivered")  # fmt: skip


def test_webhook_01_02_03_completed_failed_and_skipped_events(tx_tenant_a, workers, tmp_path):
    receiver = Receiver().start()
    try:
        created = services.endpoint_create(url=receiver.url)
        workers()
        ok = job_create(marketplace=MARKETPLACE, action="three", params=_params(tmp_path, "ok"))
        bad = _params(tmp_path, "bad")
        set_faults(bad["faults"], {"step2": {"mode": "permanent", "times": 1}})
        failed = job_create(marketplace=MARKETPLACE, action="three", params=bad)
        group = _params(tmp_path, "group")
        set_faults(group["faults"], {"only": {"mode": "permanent", "times": 1}})
        spec = JobSpec(marketplace=MARKETPLACE, action="one", params=group)
        batch = batch_create(name="group", jobs=[spec] * 3, mode=Batch.Mode.SEQUENTIAL)
        # completed, failed, the group's failed, its two skipped, batch.partial
        _all_delivered(6)
        got = receiver.snapshot()
        by_type = defaultdict(list)
        for item in got:
            assert receiver_verifies(created.secret, item.headers, item.body)
            by_type[item.json["type"]].append(item.json)

        # WEBHOOK-01: the completed job's event, with the documented schema.
        (done,) = [e for e in by_type["job.run.completed"] if e["job"]["id"] == ok.pk]
        run = JobRun.objects.get(job=ok)
        assert set(done) == {"id", "type", "timestamp", "tenant", "status", "run_id", "attempt",
                             "idempotency_key", "job", "progress", "outputs"}  # fmt: skip
        assert (done["tenant"], done["status"], done["run_id"], done["attempt"]) == (
            "test_alpha", "completed", run.pk, 1)  # fmt: skip
        assert done["progress"] == {"steps_completed": 3, "steps_total": 3, "percent": 100}
        assert {k: v["remote_id"] for k, v in done["outputs"].items()} == {
            f"step{i}": f"step{i}-{ok.pk}" for i in (1, 2, 3)}  # fmt: skip

        # WEBHOOK-02: the failed job's event carries the error and the failed step.
        (fail,) = [e for e in by_type["job.run.failed"] if e["job"]["id"] == failed.pk]
        assert fail["status"] == "failed" and fail["error"]["step"] == "step2"
        assert "HTTP 400" in fail["error"]["message"] and fail["error"]["will_retry"] is False
        assert list(fail["outputs"]) == ["step1"]

        # WEBHOOK-03: the group stopped by its first job's failure: one skipped per later job.
        jobs = list(batch.jobs.order_by("sequence").values_list("pk", flat=True))
        assert sorted(e["job"]["id"] for e in by_type["job.run.skipped"]) == jobs[1:]
        assert [e["batch"]["id"] for e in by_type["batch.partial"]] == [batch.pk]
        assert len({item.event_id for item in got}) == len(got)  # each sent once here
    finally:
        receiver.stop()


def _arrivals(receiver):
    seen = defaultdict(list)
    for number, item in enumerate(receiver.snapshot(), start=1):
        seen[item.event_id].append((number, item))
    return seen


def test_webhook_04_receiver_down_then_500s_then_back_nothing_lost(tx_tenant_a, workers, tmp_path):
    port = free_port()  # nothing listens: connection refused
    services.endpoint_create(url=f"http://127.0.0.1:{port}/hooks")
    workers()
    jobs = [
        job_create(marketplace=MARKETPLACE, action="one", params=_params(tmp_path, f"j{i}"))
        for i in range(5)
    ]
    retried = _params(tmp_path, "retried")
    set_faults(retried["faults"], {"only": {"mode": "retryable", "times": 1}})
    jobs.append(job_create(marketplace=MARKETPLACE, action="one", params=retried))
    wait_for(
        # (The retried job's completed event waits for its failed one: per-job order.)
        lambda: (
            WebhookDelivery.objects.count() == 7
            and WebhookDelivery.objects.filter(
                last_error__contains="ConnectionRefusedError"
            ).count()
            == 6
        ),
        timeout=90,
        what="every event to have been tried against the closed port",
    )
    refusing = 6  # then the receiver answers 500 to its first requests
    receiver = Receiver(port=port, behaviour=lambda n, r: (500 if n <= refusing else 200, 0))
    receiver.start()
    try:
        _all_delivered(7)
        seen = _arrivals(receiver)
        rows = {str(r.event_id): r for r in WebhookDelivery.objects.all()}
        assert set(seen) == set(rows)  # every event arrived: nothing lost
        for event_id, copies in seen.items():
            bodies = {item.body for _n, item in copies}
            run_ids = {item.json["run_id"] for _n, item in copies}
            assert len(bodies) == 1 and run_ids == {rows[event_id].run_id}  # duplicates agree
            assert any(n > refusing for n, _ in copies)  # and one was accepted
        assert sum(len(c) for c in seen.values()) > len(seen)  # there were duplicates
        # Per-job order: the retried job's completed event arrived only after its failed one
        # was accepted.
        kinds = {r.event_type: str(r.event_id) for r in rows.values() if r.job_id == jobs[-1].pk}
        accepted_failed = min(n for n, _ in seen[kinds["job.run.failed"]] if n > refusing)
        first_completed = min(n for n, _ in seen[kinds["job.run.completed"]])
        assert first_completed > accepted_failed
    finally:
        receiver.stop()


def test_webhook_04_worker_killed_mid_delivery_is_redelivered(tx_tenant_a, workers, tmp_path):
    hang = {"first": True}

    def behaviour(n, item):
        if hang["first"]:
            hang["first"] = False
            return 200, 30.0  # the first request hangs: the worker is killed meanwhile
        return 200, 0

    receiver = Receiver(behaviour=behaviour).start()
    try:
        services.endpoint_create(url=receiver.url)
        workers()
        job = job_create(marketplace=MARKETPLACE, action="one", params=_params(tmp_path, "k"))
        wait_for(lambda: receiver.snapshot(), timeout=60, what="the first request")
        row = WebhookDelivery.objects.get()
        pid = int(row.claimed_by.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)  # mid-delivery: the receiver has it, no answer recorded
        _all_delivered(1, timeout=120, sweep=True)
        first, *again = receiver.snapshot()
        assert again and {r.event_id for r in again} == {first.event_id}
        assert {r.json["run_id"] for r in [first, *again]} == {
            JobRun.objects.get(job=job).pk}  # fmt: skip
        row.refresh_from_db()
        assert row.attempts >= 2 and row.claimed_by != f"{row.claimed_by.rsplit(':', 1)[0]}:{pid}"
        assert MarketplaceJob.objects.get(pk=job.pk).status == "completed"
    finally:
        receiver.stop()
