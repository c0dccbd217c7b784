"""Drain slots: freed by the sweep when their workers are gone (not only by expiry), and as
many as the workers of every cluster seen on the database (a second machine adds drains)."""

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from django_q.models import OrmQ

from orchestration.engine import slots
from tenants.models import DrainSlot, QueueCluster


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_sweep_frees_slots_of_dead_local_workers_only(tenant_a):
    host = socket.gethostname()
    held = timezone.now() + timedelta(seconds=60)
    dead = DrainSlot.objects.create(held_until=held, holder=f"{host}:{_dead_pid()}")
    alive = DrainSlot.objects.create(held_until=held, holder=f"{host}:{os.getpid()}")
    queued = DrainSlot.objects.create(held_until=held, holder="queued")
    elsewhere = DrainSlot.objects.create(held_until=held, holder="another-host:1")

    assert slots.free_slots_of_dead_workers() == 1
    dead.refresh_from_db()
    assert (dead.held_until, dead.holder) == (None, "")
    for slot in (alive, queued, elsewhere):  # alive, not started yet, or not ours to judge
        slot.refresh_from_db()
        assert slot.held_until == held, slot.holder


def test_the_sweep_task_reports_the_slots_it_freed(tenant_a):
    from orchestration import tasks

    held = timezone.now() + timedelta(seconds=60)
    DrainSlot.objects.create(held_until=held, holder=f"{socket.gethostname()}:{_dead_pid()}")
    assert tasks.sweep()["freed_slots"] == 1


@pytest.fixture
def presence():
    slots.forget_presence()
    yield QueueCluster.objects
    slots.forget_presence()


def _queued_drains() -> int:
    return DrainSlot.objects.filter(holder="queued").count()


@override_settings(Q_CLUSTER={"workers": 2, "orm": "default", "name": "orchestrator"})
def test_the_slots_add_up_the_workers_of_every_cluster_seen(tenant_a, presence):
    assert slots.drain_slots() == 2  # no cluster seen yet: this process's worker count
    presence.create(name="machine-a:10", workers=2)
    presence.create(name="machine-b:20", workers=3)
    slots.forget_presence()
    assert slots.drain_slots() == 5
    OrmQ.objects.all().delete()
    assert slots.ensure_drains() == 5  # a drain for every worker of both machines
    assert _queued_drains() == 5 and OrmQ.objects.count() == 5
    assert slots.ensure_drains() == 0


@override_settings(Q_CLUSTER={"workers": 2, "orm": "default", "name": "orchestrator"})
def test_a_cluster_not_seen_lately_no_longer_counts(tenant_a, presence):
    presence.create(name="machine-a:10", workers=2)
    gone = presence.create(name="machine-b:20", workers=3)
    slots.forget_presence()
    assert slots.ensure_drains() == 5
    DrainSlot.objects.update(held_until=None, holder="")  # every drain ended
    presence.filter(pk=gone.pk).update(
        seen_at=timezone.now() - slots.PRESENCE_HORIZON - timedelta(seconds=1)
    )
    slots.forget_presence()
    assert slots.drain_slots() == 2
    assert slots.ensure_drains() == 2  # the slots beyond stay idle
    assert DrainSlot.objects.count() == 5 and _queued_drains() == 2


@override_settings(Q_CLUSTER={"workers": 2, "orm": "default", "name": "orchestrator"})
def test_drain_slots_set_by_the_operator_win(tenant_a, presence, monkeypatch):
    presence.create(name="machine-a:10", workers=4)
    monkeypatch.setenv("ORCHESTRATION_DRAIN_SLOTS", "1")
    assert slots.drain_slots() == 1


@override_settings(Q_CLUSTER={"workers": 3, "orm": "default", "name": "orchestrator"})
def test_a_starting_worker_registers_its_cluster_and_drains_keep_it_seen(
    tenant_a, presence, monkeypatch
):
    monkeypatch.setattr(slots, "_in_worker", False)
    slots.register_worker_cluster()
    row = presence.get()
    assert row.name == f"{socket.gethostname()}:{os.getppid()}" and row.workers == 3
    presence.update(seen_at=timezone.now() - timedelta(minutes=1))
    slot = DrainSlot.objects.create(holder="queued", token="t")
    assert slots.take_slot(slot.pk, "t", "me:1")
    assert presence.get().seen_at > timezone.now() - timedelta(seconds=10)


@override_settings(Q_CLUSTER={"workers": 2, "orm": "default", "name": "orchestrator"})
def test_the_sweep_forgets_local_clusters_whose_sentinel_is_gone(tenant_a, presence):
    """A watchdog restart leaves its old cluster's row: counted on, its workers would queue
    drains nobody takes (and the stall rule restarts a cluster whose drain waits)."""
    from orchestration import tasks

    host = socket.gethostname()
    presence.create(name=f"{host}:{_dead_pid()}", workers=2)
    alive = presence.create(name=f"{host}:{os.getpid()}", workers=2)
    elsewhere = presence.create(name="another-host:1", workers=2)
    slots.forget_presence()
    assert slots.drain_slots() == 6
    assert tasks.sweep()["clusters_gone"] == 1
    assert set(presence.values_list("pk", flat=True)) == {alive.pk, elsewhere.pk}
    assert slots.drain_slots() == 4


def test_a_new_worker_enqueues_the_quick_sweep_and_counts_its_cluster(tenant_a, presence):
    from django_q.signing import SignedPackage

    from orchestration.apps import _sweep_at_worker_start

    OrmQ.objects.all().delete()
    _sweep_at_worker_start(sender=None, proc_name="Process-1")
    (message,) = OrmQ.objects.all()
    task = SignedPackage.loads(message.payload)
    # Not the slow pass over every tenant: that is the watchdog's, every 15 s.
    assert (task["func"], task["kwargs"]) == ("orchestration.tasks.sweep", {"reconcile": False})
    assert presence.filter(name=slots.cluster_name()).exists()
