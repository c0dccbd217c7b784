"""What both parts share: the tenants, job kinds, q2's poll and the documented bound."""

from __future__ import annotations

NAME = "dispatch_fairness"


# Five real tenants with work for part 1; the first two are A and B of part 2.
REAL_TENANTS = ["fair_a", "fair_b", "fair_c", "fair_d", "fair_e"]


TENANT_A, TENANT_B = REAL_TENANTS[0], REAL_TENANTS[1]


PART1_MARKETPLACE, PART1_ACTION, PART1_JOBS = "noopmkt", "one", 40


MARKETPLACE, ACTION = "testmkt", "one"  # part 2: one step reading the faults file (sleep)


IDLE_PREFIX = "idle_"


Q2_POLL_S = 0.2  # Q_CLUSTER["poll"] in config/settings.py


DOC_ESTIMATE_S = (2.0, 3.0)  # docs/engine.md "Hand-off to django-q2": "about 2-3 s"
