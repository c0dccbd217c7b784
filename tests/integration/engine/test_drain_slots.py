"""Drain slots held by workers that are gone are freed by the sweep, not only by expiry."""

import os
import socket
import subprocess
from datetime import timedelta

from django.utils import timezone

from orchestration.engine import slots
from tenants.models import DrainSlot


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
