"""Drain slots: at most one drain per worker process is queued or running at a time.

A slot is a public ``DrainSlot`` row; a drain message names its slot and a token. Enqueueing
a drain marks the slot queued with a new token; the drain takes it when it starts (a stale
message, whose token changed, does nothing), renews it while it works and frees it at the
end. A lost message loses nothing: its slot expires and the work is still in the tables.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from orchestration import conf
from orchestration.engine.session import worker_id
from tenants.models import DrainSlot, WorkerCluster

logger = logging.getLogger(__name__)


def _slot_grace() -> timedelta:
    # How long an enqueued drain may wait in q2 before its slot is presumed lost.
    return timedelta(seconds=2 * conf.get("DRAIN_SECONDS") + 30)


def ensure_drains() -> int:
    """Enqueue a drain for every free slot (up to the worker count); returns how many."""
    started = 0
    while _start_one_drain():
        started += 1
    return started


def _start_one_drain() -> bool:
    now = timezone.now()
    for _ in range(2):
        with transaction.atomic():
            slot = (
                DrainSlot.objects.select_for_update(skip_locked=True)
                .exclude(held_until__gt=now)
                .order_by("pk")
                .first()
            )
            if slot is not None:
                _queue_drain(slot.pk, now)
                return True
            existing = DrainSlot.objects.count()
            wanted = conf.drain_slots()
            if existing >= wanted:
                return False
            DrainSlot.objects.bulk_create([DrainSlot() for _ in range(wanted - existing)])
    return False


def _queue_drain(slot_id: int, now: datetime) -> None:
    """Mark the slot queued with a new token and enqueue its drain message (in the caller's
    transaction). With the ORM broker the message is part of the transaction (it commits
    with the slot or not at all); with Redis it is sent after commit."""
    token = uuid.uuid4().hex
    DrainSlot.objects.filter(pk=slot_id).update(
        held_until=now + _slot_grace(), holder="queued", token=token, queued_at=now
    )
    send = partial(async_task, "orchestration.tasks.drain", slot_id, token)
    if settings.Q_CLUSTER.get("orm"):
        send()
    else:
        transaction.on_commit(send)


def requeue_stale_slots(*, queued_before: datetime) -> int:
    """Slots whose drain message was queued before ``queued_before`` and never taken (a
    cluster restarted with it in its local queue): new token, new message. The old
    message, if the broker redelivers it, finds another token and does nothing."""
    now = timezone.now()
    requeued = 0
    with transaction.atomic():
        for slot_id in (
            DrainSlot.objects.select_for_update(skip_locked=True)
            .filter(holder="queued", queued_at__lt=queued_before)
            .order_by("pk")
            .values_list("pk", flat=True)
        ):
            _queue_drain(slot_id, now)
            requeued += 1
    if requeued:
        logger.warning("re-queued %s drain message(s) that no worker took", requeued)
    return requeued


def take_slot(slot_id: int, token: str | None, holder: str) -> bool:
    """The drain of this message starts: hold its slot. False if the message is stale (the
    slot was re-queued with another token, or is held by a drain already)."""
    slots = DrainSlot.objects.filter(pk=slot_id, holder="queued")
    if token is not None:
        slots = slots.filter(token=token)
    return bool(
        slots.update(held_until=timezone.now() + _slot_grace(), holder=holder, queued_at=None)
    )


def hold_slot(slot_id: int, holder: str) -> None:
    DrainSlot.objects.filter(pk=slot_id, holder=holder).update(
        held_until=timezone.now() + _slot_grace()
    )
    cluster_progress()


CLUSTER_ENV = "ORCHESTRATION_CLUSTER"  # set by the watchdog on the cluster it runs


def cluster_progress() -> None:
    """This worker's cluster is doing work (a drain started or moved on): tell its watchdog."""
    name = os.environ.get(CLUSTER_ENV)
    if name:
        WorkerCluster.objects.filter(name=name).update(last_progress_at=timezone.now())


# The slot of the drain running in this process, renewed by the runner's heartbeat during
# long jobs (a drain only renews it between tenant turns otherwise).
_current_slot: tuple[int, str] | None = None


def set_current_slot(slot: tuple[int, str] | None) -> None:
    """The drain running in this process holds ``slot`` (slot id, holder), or none."""
    global _current_slot
    _current_slot = slot


def drain_heartbeat() -> None:
    if _current_slot is not None:
        hold_slot(*_current_slot)


def free_slots_of_dead_workers() -> int:
    """Free the drain slots held by workers of this host whose process is gone (a worker
    killed mid-drain), instead of waiting for their expiry; returns how many.

    Run by the sweep, which each new worker process enqueues: a restarted cluster gets its
    full number of drains at once.
    """
    prefix = worker_id().rsplit(":", 1)[0] + ":"  # this host's holders ("<host>:<pid>")
    freed = 0
    for slot_id, holder in DrainSlot.objects.filter(
        held_until__gt=timezone.now(), holder__startswith=prefix
    ).values_list("pk", "holder"):
        pid = holder.removeprefix(prefix)
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        freed += DrainSlot.objects.filter(pk=slot_id, holder=holder).update(
            held_until=None, holder=""
        )
    if freed:
        logger.warning("freed %s drain slot(s) held by workers that are gone", freed)
    return freed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def free_slot(slot_id: int, holder: str) -> None:
    DrainSlot.objects.filter(pk=slot_id, holder=holder).update(held_until=None, holder="")


# --- picking tenants -----------------------------------------------------------------
