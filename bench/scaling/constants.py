"""What every part of the scaling benchmark shares."""

from __future__ import annotations

import sys

NAME = "scaling"

SCHEMA = "bench"  # the busy tenant of the worker and cluster runs

TEMPLATE = "t0000"  # a real tenant (create_tenant), cloned into the others

TENANT_PREFIX = "t"

# no-op steps whose resource allows 64 at once (tests/engine_providers.py)
MARKETPLACE, ACTION, STEPS_PER_JOB = "noopmkt", "noop5", 5
# 5 steps that each wait 20 ms (a marketplace call's latency, hardly any CPU): the cluster
# runs with these show what another machine's workers add when the CPU is not the limit.
WAIT_ACTION = "wait5"

REDIS_URL = "redis://127.0.0.1:6379/6"

# What each machine runs (docs/reliability.md): the watchdog, which runs the qcluster as its
# child, sweeps, and sends again drain messages another cluster's pusher fetched ahead.
COMMAND = (sys.executable, "manage.py", "run_workers")
