"""Delivery in this process against a real local HTTP receiver: signing, retries, order,
leases, redelivery, disabling, URL safety. (Real workers: tests/e2e/test_webhooks_workers.py.)"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from orchestration.services import job_create, job_execute_now
from tests.engine_providers import MARKETPLACE, set_faults
from tests.integration.webhooks.conftest import params
from tests.integration.webhooks.receiver import Receiver, free_port
from webhooks import delivery, services, signing
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def receiver_verifies(secret: str, headers: dict[str, str], body: bytes, *, now=None) -> bool:
    """What docs/webhooks.md tells a receiver to do, written independently of webhooks.signing."""
    timestamp = headers["x-webhook-timestamp"]
    if abs((now or time.time()) - int(timestamp)) > 300:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + expected.hexdigest(), headers["x-webhook-signature"])


def deliver(seconds: float = 5.0) -> delivery.Stats:
    return delivery.deliver_due(until=time.monotonic() + seconds, worker="test:1")


def _completed_job(tmp_path):
    job = job_create(marketplace=MARKETPLACE, action="one", params=params(tmp_path))
    job_execute_now(job_id=job.pk)
    return job


def test_delivered_request_is_signed_and_verifies(hooks, receiver):
    created = services.endpoint_create(url=receiver.url)
    job = _completed_job(hooks)
    assert deliver().delivered == 1
    (got,) = receiver.snapshot()
    row = WebhookDelivery.objects.get()
    assert got.json == row.payload and got.event_id == str(row.event_id)
    assert got.headers["x-webhook-event"] == "job.run.completed"
    assert got.headers["idempotency-key"] == f"run-{row.run_id}"
    assert got.headers["content-type"] == "application/json"
    assert receiver_verifies(created.secret, got.headers, got.body)
    assert signing.verify(created.secret, body=got.body, timestamp=got.headers["x-webhook-timestamp"],
                          signature_header=got.headers["x-webhook-signature"])  # fmt: skip
    # Tampered body, wrong secret, or an old timestamp: refused.
    assert not receiver_verifies(created.secret, got.headers, got.body.replace(b"one", b"two"))
    assert not receiver_verifies("whsec_other", got.headers, got.body)
    assert not receiver_verifies(created.secret, got.headers, got.body, now=time.time() + 3600)
    old = {**got.headers, "x-webhook-timestamp": str(int(time.time()) - 3600)}
    old["x-webhook-signature"] = signing.signature(
        created.secret, old["x-webhook-timestamp"], got.body
    )
    assert not receiver_verifies(created.secret, old, got.body)  # validly signed, but stale
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 200 and '"ok": true' in attempt.response_excerpt
    assert row.job_id == job.pk


def test_failures_back_off_then_fail_for_good_and_disable_the_endpoint(hooks):
    receiver = Receiver(behaviour=lambda n, r: (500, 0)).start()
    try:
        endpoint = services.endpoint_create(url=receiver.url).endpoint
        _completed_job(hooks)
        settings = {"RETRY_BASE_SECONDS": 0.01, "RETRY_MAX_SECONDS": 0.02,
                    "RETRY_WINDOW_SECONDS": 1.0, "DISABLE_AFTER_SECONDS": 0}  # fmt: skip
        with override_settings(WEBHOOKS=settings):
            deadline = time.monotonic() + 30
            while WebhookDelivery.objects.filter(status="pending").exists():
                assert time.monotonic() < deadline, "the delivery never failed for good"
                deliver(0.2)
                time.sleep(0.02)
        row = WebhookDelivery.objects.get()
        assert row.status == "failed" and row.attempts >= 1 and row.last_status_code == 500
        assert row.attempt_log.count() == row.attempts == len(receiver.snapshot())
        endpoint.refresh_from_db()
        assert not endpoint.active and "Disabled automatically" in endpoint.disabled_reason
    finally:
        receiver.stop()


def test_connection_refused_is_retried_and_recorded(hooks):
    endpoint = services.endpoint_create(url=f"http://127.0.0.1:{free_port()}/hooks").endpoint
    _completed_job(hooks)
    stats = deliver()
    row = WebhookDelivery.objects.get()
    assert stats.sent == 1 and stats.delivered == 0
    assert row.status == "pending" and row.next_attempt_at > timezone.now()
    assert "ConnectionRefusedError" in row.last_error and row.last_status_code is None
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None and endpoint.active


def test_per_job_order_a_later_event_waits_for_the_earlier_one(hooks):
    """A job's completed event is not sent while its earlier failed event is still pending."""
    answers = {"failed": 0}

    def behaviour(n, got):
        if got.json["type"] == "job.run.failed" and answers["failed"] < 2:
            answers["failed"] += 1
            return 503, 0
        return 200, 0

    receiver = Receiver(behaviour=behaviour).start()
    try:
        services.endpoint_create(url=receiver.url)
        set_faults(hooks / "faults.json", {"only": {"mode": "retryable", "times": 1}})
        job = job_create(marketplace=MARKETPLACE, action="one", params=params(hooks))
        job_execute_now(job_id=job.pk)  # fails (retrying): event 1
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        deliver()  # event 1 → 503
        from orchestration.services import run_available_jobs

        job.refresh_from_db()
        while job.status != "completed":
            run_available_jobs()
            job.refresh_from_db()
        # Event 2 (completed) is due now; event 1 is in backoff: nothing may be sent.
        assert WebhookDelivery.objects.count() == 2
        assert deliver().sent == 0
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        for _ in range(5):
            deliver()
            WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
        types = [r.json["type"] for r in receiver.snapshot()]
        assert types == ["job.run.failed", "job.run.failed", "job.run.failed", "job.run.completed"]
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    finally:
        receiver.stop()


def test_a_claim_whose_worker_vanished_is_redelivered_after_its_lease(hooks, receiver):
    services.endpoint_create(url=receiver.url)
    _completed_job(hooks)
    (gone,) = delivery.claim(limit=10, worker="host:999999")  # claimed, then the worker died
    assert delivery.claim(limit=10, worker="test:1") == []  # leased: nobody else takes it
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert deliver().delivered == 1  # the lease ended: redelivered
    row = WebhookDelivery.objects.get()
    assert row.attempts == 2 and row.status == "delivered"
    # The vanished worker's late write is fenced by the attempt number: nothing changes.
    late = delivery.record([gone], [delivery.Outcome(500, "HTTP 500", "", 1, timezone.now())],
                           worker="host:999999")  # fmt: skip
    row.refresh_from_db()
    assert late.delivered == 0 and row.status == "delivered" and row.attempts == 2


def test_redeliver_sends_the_same_event_id_again(hooks, receiver):
    services.endpoint_create(url=receiver.url)
    _completed_job(hooks)
    deliver()
    row = WebhookDelivery.objects.get()
    assert services.deliveries_redeliver(delivery_ids=[row.pk]) == 1
    deliver()
    first, second = receiver.snapshot()
    assert first.event_id == second.event_id == str(row.event_id)
    assert first.body == second.body
    row.refresh_from_db()
    assert row.status == "delivered" and row.attempts == 2


def test_ping_is_signed_like_any_event(hooks, receiver):
    created = services.endpoint_create(url=receiver.url)
    services.endpoint_ping(endpoint_id=created.endpoint.pk)
    deliver()
    (got,) = receiver.snapshot()
    assert got.json["type"] == "ping" and receiver_verifies(created.secret, got.headers, got.body)


def test_redirects_are_not_followed(hooks):
    receiver = Receiver(behaviour=lambda n, r: (302, 0)).start()
    try:
        services.endpoint_create(url=receiver.url)
        _completed_job(hooks)
        deliver()
        row = WebhookDelivery.objects.get()
        assert row.status == "pending" and row.last_status_code == 302
        assert "redirects are not followed" in row.last_error
        assert len(receiver.snapshot()) == 1
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5/hooks", "http://127.0.0.1:8000/x", "http://169.254.169.254/latest",
     "http://[::1]/x", "ftp://example.com/x", "http://user:pw@example.com/"],
)  # fmt: skip
def test_private_and_odd_urls_are_refused(hooks, url):
    refused = pytest.raises(services.WebhookError, match="URL refused")
    with override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False), refused:
        services.endpoint_create(url=url)
    assert not WebhookEndpoint.objects.exists()


def test_metadata_address_is_refused_even_when_private_ones_are_allowed(hooks):
    with pytest.raises(services.WebhookError, match="metadata"):
        services.endpoint_create(url="http://169.254.169.254/latest/meta-data")


def test_secret_never_in_repr_or_str(hooks):
    created = services.endpoint_create(url="http://127.0.0.1:9/x")
    assert created.secret.startswith("whsec_")
    assert created.secret not in repr(created.endpoint) + str(created.endpoint)


def test_re_enabling_resumes_pending_deliveries(hooks, receiver):
    endpoint = services.endpoint_create(url=receiver.url).endpoint
    _completed_job(hooks)
    services.endpoint_update(endpoint_id=endpoint.pk, active=False)
    assert deliver().sent == 0  # a disabled endpoint's deliveries wait
    services.endpoint_update(endpoint_id=endpoint.pk, active=True)
    assert deliver().delivered == 1


def test_the_address_is_checked_again_when_sending(hooks, receiver):
    """An endpoint saved while loopback was allowed is refused at connection time once it
    is not (the sender resolves and checks each connection's address)."""
    services.endpoint_create(url=receiver.url)
    _completed_job(hooks)
    with override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False):
        deliver()
    row = WebhookDelivery.objects.get()
    assert row.status == "pending" and row.last_error.startswith("refused:")
    assert "loopback" in row.last_error and receiver.snapshot() == []


def test_a_long_answer_is_capped(hooks, receiver):
    services.endpoint_create(url=receiver.url)
    _completed_job(hooks)
    with override_settings(WEBHOOKS={"RESPONSE_MAX_BYTES": 5, "EXCERPT_CHARS": 3}):
        deliver()
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 200 and attempt.response_excerpt == '{"o'
    assert WebhookDelivery.objects.get().status == "delivered"
