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
