"""Hands work to django-q2 without paying q2's per-task cost per job or per step.

The engine's tables are the queue of record. django-q2 only carries *drain* tasks:
a drain holds one of a few slots (as many as there are workers), picks the tenant
whose turn it is (round robin over tenants that have work, from the public
``TenantQueue`` index, so idle tenants cost nothing), claims and runs that tenant's
jobs for a bounded turn, moves on to the next tenant, and after a bounded time
hands back, chaining a new drain if work remains. A lost q2 message loses nothing:
its slot expires and the work is still in the tables.
"""

from __future__ import annotations

import logging
import random
import time

from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration import conf
from orchestration.engine import marks, slots
from orchestration.engine.claims import claim_jobs, next_wake_time
from orchestration.engine.execute import DatabaseLost, execute_claims
from orchestration.engine.executor import StepExecutor
from orchestration.engine.recovery import runs_hand_back
from orchestration.engine.session import (
    DATABASE_LOST,
    tune_worker_session,
    wait_for_database,
    worker_id,
)
from tenants.db import use_public_schema
from webhooks import conf as webhooks_conf
from webhooks import delivery

logger = logging.getLogger(__name__)


def claim_size(seconds_per_job: float | None, remaining: float) -> int:
    """How many jobs to claim at once: as many as fit in the rest of the turn at the pace seen
    so far (one while the pace is unknown), at most ``CLAIM_BATCH``.

    Claimed jobs run to the end even past the turn, so a turn of slow jobs claims one at a
    time (the next tenant waits for at most one job), while quick jobs share a claim's fixed
    cost (rooms, locks, the runs' insert) among up to ``CLAIM_BATCH``.
    """
    if not seconds_per_job or seconds_per_job <= 0:
        return 1
    fits = int(max(remaining, 0.0) / seconds_per_job)
    return max(1, min(int(conf.get("CLAIM_BATCH")), fits))


def serve_tenant(
    schema_name: str,
    seen_seq: int,
    *,
    until: float,
    executor,
    pace: dict[str, float] | None = None,
    deadline: float | None = None,
) -> int:
    """Run the tenant's claimable jobs until ``until`` (monotonic). Marks it idle when empty.

    ``pace`` (seconds per job, per tenant) is kept by the caller across turns; see
    ``claim_size``. No claimed job starts after ``deadline`` (the drain's): those are
    handed back unclaimed. A claim that raises ends the tenant's turn (logged); the drain
    goes on with the next tenant.
    """
    pace = {} if pace is None else pace
    ran = 0
    with schema_context(schema_name):
        # Webhook deliveries first, for a share of the turn (jobs get the rest, and leave
        # what they do not use to the deliveries): neither starves the other.
        share, every = webhooks_share()
        start = time.monotonic()
        _deliver_webhooks(schema_name, until=start + (until - start) * share)
        hooks_next = time.monotonic() + every
        while (now := time.monotonic()) < until:
            try:
                claimed = claim_jobs(limit=claim_size(pace.get(schema_name), until - now))
            except DATABASE_LOST:
                raise
            except Exception:
                logger.exception("claiming jobs of tenant %s failed; next tenant", schema_name)
                break
            if not claimed:
                marks.mark_idle(schema_name, seen_seq, next_wake_time(timezone.now()))
                break
            started = time.monotonic()
            done, left = execute_claims(claimed, executor=executor, deadline=deadline)
            ran += done
            if left:
                runs_hand_back(left, message="handed back unstarted: the drain's time was up")
                break
            per_job = (time.monotonic() - started) / len(claimed)
            previous = pace.get(schema_name)
            pace[schema_name] = per_job if previous is None else (previous + per_job) / 2
            if (now := time.monotonic()) >= hooks_next:
                # The events these jobs just wrote go out within the turn, not after it.
                _deliver_webhooks(schema_name, until=now + (until - now) * share)
                hooks_next = time.monotonic() + every
        _deliver_webhooks(schema_name, until=until, last=True)
    return ran


def webhooks_share() -> tuple[float, float]:
    """(share of a turn given to webhook deliveries, seconds between their passes)."""
    return webhooks_conf.get("TURN_SHARE"), webhooks_conf.get("PASS_SECONDS")


def _deliver_webhooks(schema_name: str, *, until: float, last: bool = False) -> None:
    """The tenant's due webhook deliveries (``webhooks.delivery``) until ``until``; the last
    pass of a turn also re-asserts when the next ones are due. A failure is logged and
    leaves the claimed rows to their lease (redelivered), never ends the drain."""
    try:
        if time.monotonic() < until:
            delivery.deliver_due(until=until)
        if last:
            delivery.reassert_wake(schema_name)
    except DATABASE_LOST:
        raise
    except Exception:
        logger.exception("webhook deliveries of tenant %s failed; next tenant", schema_name)


RECONNECT_SECONDS = 60.0  # how long a drain waits for a lost database before giving up


def drain(slot_id: int | None = None, token: str | None = None) -> dict:
    """One q2 task's worth of work across tenants; see the module docstring.

    A stale message (its slot's message was sent again since, see
    ``slots.resend_waiting_drains``) does nothing.
    A lost database connection does not end the drain: it waits for the database (up to
    ``RECONNECT_SECONDS``), hands back the claims it had not finished, and goes on.
    """
    started = time.monotonic()
    deadline = started + conf.get("DRAIN_SECONDS")
    worker = worker_id()
    if slot_id is not None:
        if not slots.take_slot(slot_id, token, worker):
            logger.info("stale drain message for slot %s: nothing to do", slot_id)
            return {"jobs": 0, "tenants": [], "stale": True}
        slots.set_current_slot((slot_id, worker))
        slots.cluster_progress()
    executor = StepExecutor()
    jobs = 0
    tenants: set[str] = set()
    pace: dict[str, float] = {}  # seconds per job seen in this drain, per tenant
    reconnects = 0
    try:
        tune_worker_session()
        while time.monotonic() < deadline:
            try:
                picked = marks.pick_tenant()
                if picked is None:
                    wait = marks.seconds_until_next_wake()
                    if wait is None or wait > min(
                        conf.get("WAKE_AHEAD_SECONDS"), deadline - time.monotonic()
                    ):
                        break
                    time.sleep(min(max(wait, 0.05), 0.5))
                    continue
                schema, seq = picked
                turn = conf.get("TENANT_TURN_SECONDS")
                if not tenants:
                    # Drains start together; a random first turn puts their turns out of
                    # phase, so a newly ready tenant waits for the earliest turn end.
                    turn *= random.uniform(0.5, 1.0)
                turn_end = min(deadline, time.monotonic() + turn)
                tenants.add(schema)
                jobs += serve_tenant(
                    schema, seq, until=turn_end, executor=executor, pace=pace, deadline=deadline
                )
                if slot_id is not None:
                    slots.hold_slot(slot_id, worker)
            except (DatabaseLost, *DATABASE_LOST) as exc:
                reconnects += 1
                logger.warning("drain lost its database connection: %s", exc)
                executor.close()
                if not wait_for_database(timeout=RECONNECT_SECONDS):
                    logger.error("database still unreachable after %ss", RECONNECT_SECONDS)
                    break
                tune_worker_session()
                if isinstance(exc, DatabaseLost):
                    _hand_back_after_reconnect(schema, exc.left)
    finally:
        executor.close()
        slots.set_current_slot(None)
        _release_slot_when_possible(slot_id, worker)
    try:
        wait = marks.seconds_until_next_wake()
        if wait is not None and wait <= conf.get("WAKE_AHEAD_SECONDS"):
            slots.ensure_drains()  # chain: work remains (or a retry is due soon)
    except DATABASE_LOST:
        logger.warning("could not chain a drain (database unreachable); the sweep will")
    return {
        "jobs": jobs,
        "tenants": sorted(tenants),
        "seconds": round(time.monotonic() - started, 3),
        "reconnects": reconnects,
    }


def _hand_back_after_reconnect(schema: str, left: list) -> None:
    try:
        with schema_context(schema):
            counts = runs_hand_back(
                left, message="interrupted: the database connection was lost mid-job"
            )
        logger.warning("after reconnecting, handed back %s", counts)
    except Exception:
        # Left RUNNING: their leases expire and the sweep recovers them.
        logger.exception("could not hand back %s claim(s) after reconnecting", len(left))
    finally:
        use_public_schema()


def _release_slot_when_possible(slot_id: int | None, worker: str) -> None:
    if slot_id is None:
        return
    for _ in range(2):
        try:
            use_public_schema()
            slots.free_slot(slot_id, worker)
            return
        except DATABASE_LOST:
            if not wait_for_database(timeout=30):
                break
    logger.warning("could not free drain slot %s; it expires by itself", slot_id)
