"""Temporary: the old path of the tenant queue marks, while bench/ moves to
``orchestration.engine`` (removed before this session ends)."""

from orchestration.engine.marks import mark_idle, pick_tenant, seconds_until_next_wake, signal_work

__all__ = ["mark_idle", "pick_tenant", "seconds_until_next_wake", "signal_work"]
