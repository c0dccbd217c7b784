"""Reading schedules (the dashboard's panel)."""

from __future__ import annotations

from scheduler.models import Schedule


def upcoming_schedules(limit: int = 10) -> dict:
    """The next active schedules to run, and how many are paused."""
    active = Schedule.objects.filter(active=True)
    return {
        "next": list(active.order_by("next_run_at", "pk")[:limit]),
        "active": active.count(),
        "paused": Schedule.objects.filter(active=False).count(),
    }
