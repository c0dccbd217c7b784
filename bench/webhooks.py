"""Outbound webhooks (issue 13): deliveries per second from a backlog, and the latency from
a transition's commit to the receiver.

One fresh database, one tenant (``hook_bench``) with one endpoint pointing at a local
threaded HTTP receiver in this process (answers 200 at once, keeps connections alive).

1. **Backlog**: ``--backlog`` (10,000) pending deliveries (job-event payloads) are written,
   then a real ``manage.py qcluster`` (``--workers``, 2) is started; the drains deliver
   them. Figure: deliveries/s from the first request the receiver saw to the last
   delivery recorded; also how many q2 tasks that took (drains, not one per event).
   Target: ≥ 500/s.
2. **Latency**: with the cluster running, ``--jobs`` (300) no-op jobs are queued in small
   groups; each completion writes its ``job.run.completed`` event in the finishing
   statement. Latency = the receiver's clock when the request arrived minus the event's
   ``timestamp`` (set just before the commit). p50/p95.

Nothing here asserts on timings. Under ``CI=true`` the sizes default small.

    .venv/bin/python -m bench.webhooks
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime
from typing import Any

from bench import harness

NAME = "webhooks"
SCHEMA = "hook_bench"
TARGET_PER_S = 500


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--backlog", type=int, default=1000 if ci else 10_000)
    parser.add_argument("--jobs", type=int, default=60 if ci else 300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-db", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    server, embedded = harness.server_url()
    print(f"[{NAME}] backlog of {args.backlog} deliveries, then {args.jobs} jobs' latency")
    sys.path.insert(0, str(harness.BASE_DIR))
    from tests.integration.webhooks.receiver import Receiver

    receiver = Receiver().start()
    db = harness.BenchDatabase(server)
    try:
        with db:
            db.keep = args.keep_db
            harness.announce_database(db, server, embedded)
            env = harness.cluster_env(db.url, workers=args.workers)
            env["WEBHOOKS_ALLOW_PRIVATE_URLS"] = "true"  # the receiver is on 127.0.0.1
            env["ORCHESTRATION_PROVIDER_MODULES"] = "tests.engine_providers"
            os.environ["WEBHOOKS_ALLOW_PRIVATE_URLS"] = "true"
            _, migrate_s = harness.manage("migrate_schemas", "--noinput", env=env)
            tenants_s = harness.create_tenants([SCHEMA], env=env)
            harness.setup_django(env)
            endpoint_id = make_endpoint(receiver.url)
            log = harness.RESULTS_DIR / f"{NAME}.qcluster.log.tmp"
            write_backlog(endpoint_id, args.backlog)
            with harness.Cluster(env, log) as cluster:
                backlog = run_backlog(args, receiver, cluster)
                latency = run_latency(args, receiver, cluster)
            drains = log.read_text(errors="replace").count("'orchestration.tasks.drain'") // 2
            log.unlink(missing_ok=True)
    finally:
        receiver.stop()
    backlog["q2_drain_tasks"] = drains
    result = {
        "name": NAME,
        "at": harness.now_iso(),
        "args": vars(args),
        "machine": harness.machine_info(),
        "git": harness.git_state(),
        "setup": {"migrate_schemas_s": round(migrate_s, 2), "create_tenant_s": tenants_s},
        "backlog": backlog,
        "latency": latency,
        "target": {
            "deliveries_per_s": TARGET_PER_S,
            "met": backlog["deliveries_per_s"] >= TARGET_PER_S,
        },
        "duration_s": round(time.perf_counter() - started, 1),
    }
    path = harness.finish_result(NAME, result)
    print(f"  backlog: {backlog['deliveries_per_s']} deliveries/s ({backlog['delivered']} in "
          f"{backlog['seconds']} s, {drains} drain tasks); commit→receiver latency p50 "
          f"{latency['ms']['p50']} ms, p95 {latency['ms']['p95']} ms → {path}")  # fmt: skip
    return result


def make_endpoint(url: str) -> int:
    from django_tenants.utils import schema_context

    from webhooks.services import endpoint_create

    with schema_context(SCHEMA):
        return endpoint_create(url=url).endpoint.pk


def write_backlog(endpoint_id: int, count: int) -> None:
    """Pending deliveries shaped like job events (one per job, as a real backlog is)."""
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from orchestration.engine import marks
    from webhooks.models import WebhookDelivery

    now = timezone.now()
    with schema_context(SCHEMA):
        rows = []
        for i in range(count):
            event_id = uuid.uuid4()
            payload = {
                "id": str(event_id), "type": "job.run.completed", "tenant": SCHEMA,
                "timestamp": now.isoformat(), "status": "completed", "run_id": i + 1,
                "attempt": 1, "idempotency_key": f"run-{i + 1}",
                "job": {"id": i + 1, "marketplace": "ebay", "action": "publish", "sku": f"SKU-{i}"},
                "progress": {"steps_completed": 3, "steps_total": 3, "percent": 100},
                "outputs": {"create_offer": {"offer_id": f"O-{i}"}, "publish_offer": {"listing_id": f"L-{i}"}},
            }  # fmt: skip
            rows.append(WebhookDelivery(event_id=event_id, event_type="job.run.completed",
                                        endpoint_id=endpoint_id, job_id=i + 1, run_id=i + 1,
                                        payload=payload, next_attempt_at=now, retry_from=now,
                                        created_at=now))  # fmt: skip
        WebhookDelivery.objects.bulk_create(rows, batch_size=2000)
    marks.signal_work(SCHEMA)


def _delivered() -> int:
    from django_tenants.utils import schema_context

    from webhooks.models import WebhookDelivery

    with schema_context(SCHEMA):
        return WebhookDelivery.objects.filter(status="delivered").count()


def run_backlog(args: argparse.Namespace, receiver, cluster) -> dict[str, Any]:
    from django.db.models import Max
    from django_tenants.utils import schema_context

    from webhooks.models import WebhookDelivery

    harness.wait_for_count(_delivered, args.backlog, label="delivered", cluster=cluster,
                           timeout=900)  # fmt: skip
    first = min(r.at for r in receiver.snapshot())
    with schema_context(SCHEMA):
        last: datetime = WebhookDelivery.objects.aggregate(t=Max("delivered_at"))["t"]
        attempts = WebhookDelivery.objects.aggregate(n=Max("attempts"))["n"]
    seconds = last.timestamp() - first
    received = len(receiver.snapshot())
    return {
        "delivered": args.backlog,
        "requests_received": received,
        "duplicates": received - args.backlog,
        "max_attempts": attempts,
        "seconds": round(seconds, 2),
        "deliveries_per_s": round(args.backlog / seconds, 1),
    }


def run_latency(args: argparse.Namespace, receiver, cluster) -> dict[str, Any]:
    from datetime import datetime as dt

    from django_tenants.utils import schema_context

    from orchestration.services import JobSpec, batch_create
    from tests.engine_providers import NOOP

    before = len(receiver.snapshot())
    group = 10
    with schema_context(SCHEMA):
        for start in range(0, args.jobs, group):
            size = min(group, args.jobs - start)
            batch_create(
                name=f"latency {start}", jobs=[JobSpec(marketplace=NOOP, action="noop5")] * size
            )
            time.sleep(0.1)  # a steady trickle, not one burst
    wanted = args.jobs + args.jobs // group  # job events + one batch.completed per batch
    harness.wait_for_count(lambda: len(receiver.snapshot()) - before, wanted, label="events",
                           cluster=cluster, timeout=600)  # fmt: skip
    latencies = []
    for item in receiver.snapshot()[before:]:
        body = item.json
        if body["type"] != "job.run.completed":
            continue
        sent = dt.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
        latencies.append((item.at - sent) * 1000)
    return {"events": len(latencies), "ms": harness.distribution(latencies, 1)}


if __name__ == "__main__":
    main()
