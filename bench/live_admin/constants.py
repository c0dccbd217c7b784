"""What both parts share: the tenant and its staff user, job kinds, Chromium, targets."""

from __future__ import annotations

NAME = "live_admin"


SCHEMA = "bench"


DOMAIN = "bench.localhost"


USERNAME, PASSWORD = "staff", "bench-staff-password"


MARKETPLACE, ACTION, STEPS = "testmkt", "five", 5


WARMUP_ACTION = "one"


REDIS_URL = "redis://127.0.0.1:6379/5"


TARGET_P95_MS = 100.0


TARGET_RATIO = 2.0


SEARCH_SKU = "SKU-0000900"  # row 900: in both sizes (SKUs repeat every 200,000 rows)


STATUS_FILTER = "failed"


# The pages' windows ask for prefers-reduced-motion: Chromium shares this machine's CPUs with
# the workers it watches, and its animation frames (the progress bar's transition, a new
# row's highlight) cost it ~30% of its CPU here (0.33 -> 0.23 CPU under load), which in use
# a staff member's own computer pays. The DOM changes measured are the same.
REDUCED_MOTION = True
