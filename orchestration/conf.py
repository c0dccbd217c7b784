"""Engine settings, read at call time so tests and operators can change them.

Override with ``settings.ORCHESTRATION = {...}`` or environment variables named
``ORCHESTRATION_<KEY>`` (worker subprocesses in tests use the latter).
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, float] = {
    "LEASE_SECONDS": 60.0,  # a run's lease; renewed by heartbeat
    "HEARTBEAT_SECONDS": 10.0,  # renew the lease this often during a step
    "CANCEL_POLL_SECONDS": 0.5,  # how often a long step's worker checks for cancel
    "DEFAULT_STEP_TIMEOUT": 120.0,
    "RETRY_BASE_SECONDS": 5.0,  # backoff: base * 2**(n-1), with jitter
    "RETRY_MAX_SECONDS": 900.0,
    "DRAIN_SECONDS": 20.0,  # one q2 task works this long at most, then hands back
    "TENANT_TURN_SECONDS": 2.0,  # a tenant's turn inside a drain (fairness bound)
    "DRAIN_SLOTS": 0,  # concurrent drains; 0 = the workers of every cluster seen (slots.py)
    # The sweep's slow pass (every 15 s under the watchdog) reconciles at most this many
    # tenants, those it visited least recently: its cost stays flat however many tenants
    # there are, and each is visited every ceil(tenants / this) passes.
    "SWEEP_TENANTS": 100,
    "WAKE_AHEAD_SECONDS": 60.0,  # a drain keeps waiting for retries due this soon
    "CLAIM_BATCH": 32,  # at most this many jobs per claim (within each resource's room)
    # 1 (default): a worker's commit returns once its WAL is flushed (durable). 0 is an
    # operator's opt-out (ORCHESTRATION_SYNCHRONOUS_COMMIT=0): faster, but a PostgreSQL
    # crash can lose the last fraction of a second of step records (docs/benchmarks.md).
    "SYNCHRONOUS_COMMIT": 1,
    # Group commit for durable workers (issue 17): a committing drain waits this many µs
    # before its WAL flush when COMMIT_SIBLINGS other transactions are open, so one flush
    # covers several workers' steps. Needs a superuser or GRANT SET ON PARAMETER
    # commit_delay; without it the drain logs once and commits without the delay.
    "COMMIT_DELAY_US": 0,
    "COMMIT_SIBLINGS": 1,
}


_overrides: dict | None = None  # ``settings.ORCHESTRATION``, looked up once per change


def get(key: str) -> float:
    env = os.environ.get(f"ORCHESTRATION_{key}")
    if env is not None:
        return float(env)
    overrides = _overrides
    if overrides is None:
        # A settings lookup that misses costs a raised AttributeError; this runs several
        # times per step. The dict itself is kept, so a change made in place is seen too.
        overrides = _set_overrides(getattr(settings, "ORCHESTRATION", {}))
    return float(overrides.get(key, DEFAULTS[key]))


def _set_overrides(value: dict | None) -> dict:
    global _overrides
    _overrides = value
    return value or {}


def _on_setting_changed(setting: str, **kwargs) -> None:
    if setting == "ORCHESTRATION":
        _set_overrides(None)


setting_changed.connect(_on_setting_changed, dispatch_uid="orchestration-conf")
