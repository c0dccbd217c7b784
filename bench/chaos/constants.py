"""What the scenarios share: tenants, staff login, targets, the docs markers, kill weights."""

from __future__ import annotations

from bench import harness

NAME = "chaos"


DESCRIPTION = "Chaos benchmark: the engine under kill -9 storms, a PostgreSQL restart and an ASGI"


TENANTS = ("acme", "globex")  # seed_demo's tenants (staff / demo-pass-123)


STAFF_USER, STAFF_PASSWORD = "staff", "demo-pass-123"


LEASE_SECONDS = 60.0


PG_RECOVERY_TARGET_S = 30.0


PG_RATE_FRACTION = 0.9


WINDOW_S = 5.0


DOCS = harness.BASE_DIR / "docs" / "reliability.md"


BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


SCENARIOS = ("kill_storm", "pg_restart", "asgi_restart")


LOG = harness.RESULTS_DIR / "chaos.{}.log.tmp"


# Create effects: at most one per (marketplace, shop, SKU) whatever happens.
CREATE_OPS = ("create_inventory_item", "create_offer", "create_draft_listing", "create_item")


# Effects that should not repeat either for a publish (reported; a repeat is a finding).
ONCE_OPS = ("publish_offer", "activate_listing", "revise_listing")


# What a killed process is: weights of the storm's dice.
KILL_WEIGHTS = {"worker": 40, "pusher": 12, "monitor": 12, "sentinel": 12, "group": 24}
