"""Drain slots: at most one drain per worker process is queued or running at a time.

The slots add up the workers of every cluster seen working on this database in the last
``PRESENCE_HORIZON`` (``QueueCluster`` rows: each worker process writes its cluster's when it
starts, each drain when it takes a slot, its watchdog every tick: ``keep_counting``), so a
second machine's cluster adds drains without a setting; ``DRAIN_SLOTS`` fixes the number
instead.

A slot is a public ``DrainSlot`` row; a drain message names its slot and a token. Enqueueing
a drain marks the slot queued with a new token; the drain takes it when it starts (a stale
message, whose token changed, does nothing), renews it while it works and frees it at the
end. A lost message loses nothing: its slot expires and the work is still in the tables.
A message no worker takes (fetched ahead by a busy cluster) is sent again with a new token
(``resend_waiting_drains``, run by every watchdog), so an idle cluster runs it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django_q.tasks import async_task

from orchestration import conf
from orchestration.engine.session import worker_id
from tenants.models import DrainSlot, QueueCluster, WorkerCluster

logger = logging.getLogger(__name__)


# A cluster not seen for this long (no worker started, no drain taken) no longer counts.
# Counting a stopped cluster a while longer only queues a drain message more, which the
# next free worker runs; forgetting a live idle one only starts its drains a turn later.
PRESENCE_HORIZON = timedelta(minutes=5)
_PRESENCE_CACHE_SECONDS = 5.0  # claims read the count; the table is read once per 5 s
_presence: tuple[float, int] | None = None  # (read at, workers seen)
_in_worker = False  # this process is a q2 worker (its drains refresh its cluster's row)


def drain_slots() -> int:
    """Concurrent drains wanted: ``DRAIN_SLOTS``, or the workers of every cluster seen
    lately (at least this process's own cluster's worker count)."""
    explicit = int(conf.get("DRAIN_SLOTS"))
    if explicit:
        return explicit
    local = int(settings.Q_CLUSTER.get("workers", 2))
    return max(local, _workers_seen())


def _workers_seen() -> int:
    global _presence
    now = time.monotonic()
    if _presence is not None and now - _presence[0] < _PRESENCE_CACHE_SECONDS:
        return _presence[1]
    seen = QueueCluster.objects.filter(seen_at__gte=timezone.now() - PRESENCE_HORIZON).aggregate(
        n=Sum("workers")
    )["n"]
    _presence = (now, int(seen or 0))
    return _presence[1]


def forget_presence() -> None:
    """Read the clusters' rows again at the next ``drain_slots`` (tests; a new cluster)."""
    global _presence
    _presence = None


def _host_prefix() -> str:
    """``<host>:``, the start of this host's slot holders and cluster names."""
    return worker_id().rsplit(":", 1)[0] + ":"


def cluster_name() -> str:
    """``<host>:<pid of the q2 sentinel>``: a worker's parent is its cluster's sentinel."""
    return f"{_host_prefix()}{os.getppid()}"


def register_worker_cluster() -> None:
    """This process is a q2 worker that just started: its cluster is here, with its workers."""
    global _in_worker
    _in_worker = True
    _seen_now(int(settings.Q_CLUSTER.get("workers", 2)))
    forget_presence()


def _seen_now(workers: int | None = None) -> None:
    name = cluster_name()
    now = timezone.now()
    if workers is None:
        if QueueCluster.objects.filter(name=name).update(seen_at=now):
            return
        workers = int(settings.Q_CLUSTER.get("workers", 2))
    QueueCluster.objects.update_or_create(name=name, defaults={"workers": workers, "seen_at": now})


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
            wanted = drain_slots()
            # Only the first ``wanted`` slots (fewer clusters than before: the rest idle).
            in_use = DrainSlot.objects.order_by("pk").values("pk")[:wanted]
            slot = (
                DrainSlot.objects.select_for_update(skip_locked=True)
                .filter(pk__in=in_use)
                .exclude(held_until__gt=now)
                .order_by("pk")
                .first()
            )
            if slot is not None:
                _queue_drain(slot.pk, now)
                return True
            existing = DrainSlot.objects.count()
            if existing >= wanted:
                return False
            DrainSlot.objects.bulk_create([DrainSlot() for _ in range(wanted - existing)])
    return False


def _queue_drain(slot_id: int, now: datetime, *, resend: bool = False) -> None:
    """Mark the slot queued with a new token and enqueue its drain message (in the caller's
    transaction, which holds the slot's row). With the ORM broker the message is part of the
    transaction (it commits with the slot or not at all); with Redis a new slot's message is
    sent after commit.

    ``resend``: the slot was queued already and its message is sent again. It keeps when it
    was first queued (what the watchdog's stall rule measures); its expiry moves on, since
    the resends are what a lost message needed. The message goes out at once with either
    broker: a send that fails rolls the new token back (the earlier message stays good), and
    a worker that takes the new one before the commit waits for the row."""
    token = uuid.uuid4().hex
    held_until = now + _slot_grace()
    if resend:
        fields = {"token": token, "sent_at": now, "sends": F("sends") + 1}
    else:
        fields = {"holder": "queued", "token": token, "queued_at": now, "sent_at": now,
                  "sends": 1}  # fmt: skip
    DrainSlot.objects.filter(pk=slot_id).update(held_until=held_until, **fields)
    send = partial(async_task, "orchestration.tasks.drain", slot_id, token)
    if resend or settings.Q_CLUSTER.get("orm"):
        send()
    else:
        transaction.on_commit(send)


# django-q2's pusher fetches messages ahead of its workers (up to ``queue_limit`` + 1), so a
# drain message can wait in a busy cluster's local queue while another cluster's workers
# idle. A message untaken this long is sent again, then after twice as long each time (at
# most ``RESEND_MAX``): a free worker anywhere takes the new one within q2's poll, and the
# old one, when its cluster gets to it, finds another token and does nothing. When every
# worker is busy, the doubling keeps the extra messages to about nine per slot in the
# first five minutes, then one a minute.
RESEND_AFTER = timedelta(seconds=2)
RESEND_MAX = timedelta(seconds=60)


def resend_interval(sends: int) -> timedelta:
    """How long the ``sends``-th message of a slot waits untaken before the next is sent."""
    return min(RESEND_AFTER * 2 ** max(sends - 1, 0), RESEND_MAX)


def resend_waiting_drains(*, now: datetime | None = None, at_once: bool = False) -> int:
    """Send again the drain messages no worker has taken (see ``RESEND_AFTER``); returns
    how many. ``at_once``: every waiting slot now, whatever its last send (the watchdog
    after restarting a cluster, which took its fetched messages with it). The watchdog of
    every machine calls this each tick; only slots that may be due are locked, and a slot
    locked by another is skipped."""
    now = now or timezone.now()
    waiting = DrainSlot.objects.filter(holder="queued")
    if not at_once:
        waiting = waiting.filter(Q(sent_at__isnull=True) | Q(sent_at__lte=now - RESEND_AFTER))
    resent = 0
    with transaction.atomic():
        for slot_id, sent_at, sends in (
            waiting.select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", "sent_at", "sends")
        ):
            if at_once or sent_at is None or now - sent_at >= resend_interval(sends):
                _queue_drain(slot_id, now, resend=True)
                resent += 1
    if resent:
        logger.info("sent %s drain message(s) again: no worker took them", resent)
    return resent


def keep_counting(cluster_pids: Iterable[int]) -> int:
    """A watchdog's cluster is still there: keep its ``QueueCluster`` row (named after its
    sentinel, one of ``cluster_pids``) counted, whether or not its workers take anything.
    A cluster blocked for good (django-q2 #23) then keeps its slots, so when there is work
    their messages wait and its watchdog's stall rule restarts it, instead of the cluster
    dropping out of the count and its machine's workers being lost unnoticed. Returns the
    rows kept."""
    names = [f"{_host_prefix()}{pid}" for pid in cluster_pids]
    return QueueCluster.objects.filter(name__in=names).update(seen_at=timezone.now())


def take_slot(slot_id: int, token: str | None, holder: str) -> bool:
    """The drain of this message starts: hold its slot. False if the message is stale (the
    slot was re-queued with another token, or is held by a drain already)."""
    slots = DrainSlot.objects.filter(pk=slot_id, holder="queued")
    if token is not None:
        slots = slots.filter(token=token)
    held_until = timezone.now() + _slot_grace()
    waiting = {"queued_at": None, "sent_at": None, "sends": 0}
    taken = bool(slots.update(held_until=held_until, holder=holder, **waiting))
    if taken and _in_worker:
        _seen_now()  # still works here (without a watchdog, an idle one drops out of the count)
    return taken


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
    freed = 0
    for slot_id, holder in DrainSlot.objects.filter(
        held_until__gt=timezone.now(), holder__startswith=_host_prefix()
    ).values_list("pk", "holder"):
        if not _gone_from_this_host(holder):
            continue
        freed += DrainSlot.objects.filter(pk=slot_id, holder=holder).update(
            held_until=None, holder=""
        )
    if freed:
        logger.warning("freed %s drain slot(s) held by workers that are gone", freed)
    return freed


def forget_dead_local_clusters() -> int:
    """Delete the ``QueueCluster`` rows of this host whose sentinel process is gone (a
    cluster restarted by its watchdog, or stopped), so their workers stop counting at once
    instead of after ``PRESENCE_HORIZON``; returns how many. Run by the sweep.

    Counting them on would queue drain messages no worker is free for, and the watchdog's
    stall rule restarts a cluster whose queued drain waits: each restart would leave one
    more row behind.
    """
    names = QueueCluster.objects.filter(name__startswith=_host_prefix())
    gone = [name for name in names.values_list("name", flat=True) if _gone_from_this_host(name)]
    if gone:
        QueueCluster.objects.filter(name__in=gone).delete()
        forget_presence()
    return len(gone)


def _gone_from_this_host(name: str) -> bool:
    """``<host>:<pid>`` names a process of this host that no longer exists (a name of
    another host, or without a pid, is not this host's to judge)."""
    prefix = _host_prefix()
    pid = name.removeprefix(prefix)
    return name.startswith(prefix) and pid.isdigit() and not process_alive(int(pid))


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
