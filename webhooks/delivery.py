"""Delivering the outbox: claimed by the engine's drains, sent over HTTP, recorded.

A drain serving a tenant calls ``deliver_due`` (``orchestration.engine.dispatch.serve_tenant``):
no django-q2 task per event, so a backlog of any size costs q2 nothing more than the
drains it already runs. One call:

1. **claims** due deliveries (``FOR UPDATE SKIP LOCKED``; a row whose endpoint has an
   earlier pending delivery of the same job is not due: per-job order) by pushing their
   ``next_attempt_at`` to the end of a lease and counting the attempt, and commits;
2. **sends** them, a few at once (signed, JSON, no redirects, capped answer, timeouts);
3. **records** the outcomes in one transaction: delivered, retry at a backoff, or FAILED
   once the retry window is over (an endpoint failing that long is disabled); the writes
   are fenced by the attempt number, so a worker that overran its lease writes nothing.

A worker killed between 1 and 3 leaves its rows PENDING: due again when the lease ends
(at least once; the receiver dedupes on the event id / run id). Each call ends by
telling the tenant's queue row when deliveries are next due (``orchestration.engine.marks.wake_at``), and
the sweep re-derives that wake-up from the table (``next_due``), so none is lost.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from config.netsafety import UnsafeURL
from orchestration.engine.marks import wake_at
from orchestration.engine.session import worker_id
from tenants.db import current_schema
from webhooks import conf, sender, signing
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

USER_AGENT = "marketplace-orchestrator-webhooks/1"


@dataclass(frozen=True)
class Claimed:
    id: int
    attempt: int
    event_id: str
    event_type: str
    endpoint_id: int
    payload: Any
    run_id: int | None
    retry_from: datetime


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    excerpt: str
    latency_ms: int
    started_at: datetime

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class Stats:
    sent: int = 0
    delivered: int = 0
    failed_for_good: int = 0

    def add(self, other: Stats) -> None:
        self.sent += other.sent
        self.delivered += other.delivered
        self.failed_for_good += other.failed_for_good


# --- claim -----------------------------------------------------------------------------

_HEAD = """NOT EXISTS (SELECT 1 FROM {delivery} p
                   WHERE p.status = 'pending' AND p.endpoint_id = d.endpoint_id
                     AND p.job_id = d.job_id AND p.id < d.id)"""

_CLAIM_SQL = """
WITH picked AS (
    SELECT d.id FROM {delivery} d
      JOIN {endpoint} e ON e.id = d.endpoint_id AND e.active
     WHERE d.status = 'pending' AND d.next_attempt_at <= %(now)s AND {head}
     ORDER BY d.next_attempt_at, d.id
     LIMIT %(limit)s
       FOR UPDATE OF d SKIP LOCKED)
UPDATE {delivery} d
   SET next_attempt_at = %(now)s + make_interval(secs => GREATEST(%(lease)s,
           ceil((SELECT count(*) FROM picked) / %(concurrency)s::numeric) * %(timeout)s + 2)),
       attempts = d.attempts + 1, last_attempt_at = %(now)s, claimed_by = %(worker)s
  FROM picked WHERE d.id = picked.id
RETURNING d.id, d.attempts, d.event_id::text, d.event_type, d.endpoint_id, d.payload, d.run_id,
          d.retry_from, d.next_attempt_at
"""

_NEXT_DUE_SQL = """
SELECT min(d.next_attempt_at) FROM {delivery} d
  JOIN {endpoint} e ON e.id = d.endpoint_id AND e.active
 WHERE d.status = 'pending' AND {head}
"""


@functools.cache
def _sql(template: str) -> str:
    tables = {"delivery": WebhookDelivery._meta.db_table,
              "endpoint": WebhookEndpoint._meta.db_table}  # fmt: skip
    return template.format(head=_HEAD.format(**tables), **tables)


def claim(*, limit: int, worker: str) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries of the current tenant (committed on return).

    The lease outlasts the claimed requests (``TIMEOUT`` each, ``CONCURRENCY`` at a time),
    so a slow receiver is not sent the same event by a second worker while the first waits.
    """
    now = timezone.now()
    params: dict[str, Any] = {"now": now, "lease": conf.get("LEASE_SECONDS"), "limit": limit, "worker": worker,
              "concurrency": max(1, int(conf.get("CONCURRENCY"))), "timeout": conf.get("TIMEOUT")}  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_sql(_CLAIM_SQL), params)
        rows = cursor.fetchall()
        if rows:
            # If this worker dies before recording, a drain comes back when the lease ends.
            wake_at(current_schema(), max(row[-1] for row in rows))
    return sorted((Claimed(*row[:-1]) for row in rows), key=lambda c: c.id)


def next_due() -> datetime | None:
    """When the current tenant's next delivery is due (claimable: first of its job), or None."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(_NEXT_DUE_SQL))
        row = cursor.fetchone()
    return row[0] if row else None


# --- send ------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def close_clients() -> None:
    """Close this process's HTTP connections (tests, after their receiver stopped)."""
    sender.close_all()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(int(conf.get("CONCURRENCY")), thread_name_prefix="webhook")
        return _pool


def body_of(payload: Any) -> bytes:
    """The request body: the stored payload as compact JSON (the same bytes every attempt)."""
    if isinstance(payload, (str, bytes)):
        payload = json.loads(payload)
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def request_headers(
    *, secret: str, body: bytes, event_id: str, event_type: str, idempotency_key: str
) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        signing.ID_HEADER: event_id,
        signing.EVENT_HEADER: event_type,
        signing.TIMESTAMP_HEADER: str(timestamp),
        signing.SIGNATURE_HEADER: signing.signature(secret, timestamp, body),
        signing.IDEMPOTENCY_HEADER: idempotency_key,
    }


def send(url: str, *, headers: dict[str, str], body: bytes) -> Outcome:
    """POST once (``webhooks.sender``); never raises for the receiver's or the network's faults."""
    started_at = timezone.now()
    start = time.monotonic()
    status: int | None = None
    error = ""
    received = b""
    try:
        answer = sender.post(
            url, body=body, headers={"User-Agent": USER_AGENT, **headers},
            timeout=conf.get("TIMEOUT"), connect_timeout=conf.get("CONNECT_TIMEOUT"),
            max_bytes=int(conf.get("RESPONSE_MAX_BYTES")), allow_private=conf.allow_private_urls(),
        )  # fmt: skip
        status, received = answer.status, answer.body
    except UnsafeURL as exc:
        error = f"refused: {exc}"
    except TimeoutError:
        error = "timeout: no answer in time"
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    except Exception as exc:  # a bug must not lose the batch's other outcomes
        logger.exception("webhook send failed unexpectedly")
        error = f"internal: {type(exc).__name__}"
    if status is not None and not 200 <= status < 300 and not error:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    chars = int(conf.get("EXCERPT_CHARS"))
    excerpt = received[: chars * 4].decode("utf-8", "replace")[:chars]
    return Outcome(status_code=status, error=error, excerpt=excerpt,
                   latency_ms=int((time.monotonic() - start) * 1000), started_at=started_at)  # fmt: skip


# --- record ----------------------------------------------------------------------------


def backoff_seconds(attempt: int) -> float:
    """After the ``attempt``-th failure: base·2^(n-1), capped, jittered to 50-100 %."""
    base, cap = conf.get("RETRY_BASE_SECONDS"), conf.get("RETRY_MAX_SECONDS")
    delay = min(cap, base * 2 ** min(max(attempt - 1, 0), 30))
    return delay * random.uniform(0.5, 1.0)


_RECORD_SQL = """
UPDATE {delivery} d
   SET status = v.status, next_attempt_at = v.next_at, delivered_at = v.delivered_at,
       last_status_code = v.code, last_error = v.error, last_latency_ms = v.latency
  FROM (SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(attempts)s::int[]) AS attempts,
               unnest(%(statuses)s::text[]) AS status, unnest(%(next_at)s::timestamptz[]) AS next_at,
               unnest(%(delivered_at)s::timestamptz[]) AS delivered_at,
               unnest(%(codes)s::int[]) AS code, unnest(%(errors)s::text[]) AS error,
               unnest(%(latency)s::int[]) AS latency) AS v
 WHERE d.id = v.id AND d.attempts = v.attempts AND d.status = 'pending'
RETURNING d.id, d.status
"""


def record(claimed: list[Claimed], outcomes: list[Outcome], *, worker: str) -> Stats:
    """Store what happened, in one transaction (see the module docstring)."""
    now = timezone.now()
    window = timedelta(seconds=conf.get("RETRY_WINDOW_SECONDS"))
    stats = Stats(sent=len(claimed))
    rows: dict[str, list[Any]] = {k: [] for k in ("ids", "attempts", "statuses", "next_at",
                                                    "delivered_at", "codes", "errors", "latency")}  # fmt: skip
    good: set[int] = set()
    bad: set[int] = set()
    for item, outcome in zip(claimed, outcomes, strict=True):
        if outcome.ok:
            status, next_at, delivered_at = WebhookDelivery.Status.DELIVERED, None, now
            good.add(item.endpoint_id)
        else:
            bad.add(item.endpoint_id)
            retry_at = now + timedelta(seconds=backoff_seconds(item.attempt))
            if retry_at > item.retry_from + window:
                status, next_at, delivered_at = WebhookDelivery.Status.FAILED, None, None
            else:
                status, next_at, delivered_at = WebhookDelivery.Status.PENDING, retry_at, None
        values = (item.id, item.attempt, str(status), next_at, delivered_at,
                  outcome.status_code, outcome.error, outcome.latency_ms)  # fmt: skip
        for key, value in zip(rows, values, strict=True):
            rows[key].append(value)
    with transaction.atomic():
        WebhookAttempt.objects.bulk_create(
            WebhookAttempt(delivery_id=item.id, number=item.attempt, started_at=o.started_at,
                           latency_ms=o.latency_ms, status_code=o.status_code, error=o.error,
                           response_excerpt=o.excerpt, worker=worker)
            for item, o in zip(claimed, outcomes, strict=True)
        )  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(_sql(_RECORD_SQL), rows)
            written = dict(cursor.fetchall())
        stats.delivered = sum(1 for s in written.values() if s == WebhookDelivery.Status.DELIVERED)
        failed_for_good = [i for i, s in written.items() if s == WebhookDelivery.Status.FAILED]
        stats.failed_for_good = len(failed_for_good)
        endpoints = WebhookEndpoint.objects
        if good:
            endpoints.filter(pk__in=good).update(last_success_at=now, failing_since=None)
        if bad - good:
            endpoints.filter(pk__in=bad - good, failing_since__isnull=True).update(
                failing_since=now
            )
        if failed_for_good:
            _disable_failing(failed_for_good, now=now)
    return stats


def _disable_failing(delivery_ids: list[int], *, now: datetime) -> None:
    """Endpoints of deliveries that just failed for good, failing since longer than
    ``DISABLE_AFTER_SECONDS`` with no success, are disabled with a notice for staff."""
    since = now - timedelta(seconds=conf.get("DISABLE_AFTER_SECONDS"))
    endpoint_ids = set(
        WebhookDelivery.objects.filter(pk__in=delivery_ids).values_list("endpoint_id", flat=True)
    )
    for endpoint in WebhookEndpoint.objects.filter(
        pk__in=endpoint_ids, active=True, failing_since__lte=since
    ):
        reason = (
            f"Disabled automatically on {now:%Y-%m-%d %H:%M} UTC: every delivery has failed "
            f"since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC and the retries of at least "
            "one event ran out. Fix the receiver, then re-enable the endpoint (pending "
            "deliveries resume) and redeliver the failed ones."
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(
            active=False, disabled_at=now, disabled_reason=reason
        )
        logger.warning("webhook endpoint %s (%s) disabled: failing since %s",
                       endpoint.pk, current_schema(), endpoint.failing_since)  # fmt: skip


# --- the drain's entry point -----------------------------------------------------------

_batch_size: dict[str, int] = {}  # per tenant: grows while batches are quick


def deliver_due(*, until: float, worker: str | None = None) -> Stats:
    """Claim, send and record the current tenant's due deliveries until ``until``
    (monotonic) or none is due. Called by the drain serving the tenant."""
    worker = worker or worker_id()
    schema = current_schema()
    concurrency = int(conf.get("CONCURRENCY"))
    stats = Stats()
    while time.monotonic() < until:
        size = _batch_size.get(schema, concurrency)
        claimed = claim(limit=size, worker=worker)
        if not claimed:
            break
        started = time.monotonic()
        outcomes = _send_all(claimed)
        stats.add(record(claimed, outcomes, worker=worker))
        took = time.monotonic() - started
        cap = int(conf.get("CLAIM_MAX"))
        _batch_size[schema] = min(cap, size * 2) if took < 0.5 else concurrency
    return stats


def _send_all(claimed: list[Claimed]) -> list[Outcome]:
    endpoints = {
        e.pk: e
        for e in WebhookEndpoint.objects.filter(pk__in={c.endpoint_id for c in claimed}).only(
            "pk", "url", "secret"
        )
    }

    def one(item: Claimed) -> Outcome:
        endpoint = endpoints.get(item.endpoint_id)
        if endpoint is None:  # deleted meanwhile (its rows go with it)
            return Outcome(None, "endpoint deleted", "", 0, timezone.now())
        body = body_of(item.payload)
        key = f"run-{item.run_id}" if item.run_id else f"event-{item.event_id}"
        headers = request_headers(secret=endpoint.secret, body=body, event_id=item.event_id,
                                  event_type=item.event_type, idempotency_key=key)  # fmt: skip
        return send(endpoint.url, headers=headers, body=body)

    if len(claimed) == 1:
        return [one(claimed[0])]
    return list(_executor().map(one, claimed))


def reassert_wake(schema_name: str) -> None:
    """Tell the tenant's queue row when deliveries are next due (now: it stays ready)."""
    due = next_due()
    if due is not None:
        wake_at(schema_name, due)
