"""Tenant-isolation matrix: every door, tried with the wrong tenant's credentials and ids,
and with a viewer's credentials against every action.

``DOORS`` is the table: one ``Door`` per URL a person or a program can call. Each door is
tried in three ways (the tests in ``test_isolation_matrix.py``):

- **foreign ids**: tenant alpha's staff session / API token, on alpha's host, with the ids
  of beta's objects (alpha has none of its own in these tests, so an id can only mean
  beta's). Expected: no read (beta's markers never appear), no write (beta's state is
  unchanged), and "not found" (404, or the admin's own "doesn't exist" redirect), never
  a 403 that would confirm the id exists somewhere.
- **foreign host**: alpha's credentials sent to beta's host, where beta's objects do
  exist. Expected: not authenticated (the login page, 401), no read, no write.
- **viewer**: a staff user with view permissions only / a read-only API token, on its
  own tenant's objects. Expected: every write door refuses (403, or the form again) and
  changes nothing; read doors answer.

Adding a door (uploads, webhooks, schedules as they land) is one ``Door(...)`` line:
``{job}``, ``{batch}``, ``{product}``, ``{sku}``, ``{resource}``, ``{plan}`` in the path
are filled with the target tenant's objects (``isolation_world.World``). The platform page
has its own test there; sockets and cache keys are in ``test_isolation_socket_and_cache.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MARKER = "Zq-secret-of"  # in every name/title/sku of the target tenant's objects


@dataclass(frozen=True)
class Door:
    name: str
    method: str  # get, post, put, delete
    path: str
    kind: str  # "admin" (session), "api" (token), "page" (session, non-admin)
    writes: bool
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Names (a SKU, a resource key) rather than ids: the same name in the caller's tenant is
    # the caller's own object, so acting there is fine; the target's must stay untouched.
    by_name: bool = False
    # A known bug this row shows in the foreign-ids scenario (run_matrix fails the day it
    # is fixed, so the note is removed then).
    bug: str = ""

    @property
    def aims_at_an_object(self) -> bool:
        if self.by_name:
            return False
        return "{" in self.path.split("?", 1)[0] or any("{" in str(v) for v in self.data.values())


DOORS: list[Door] = [
    # --- admin: jobs ---
    Door("admin job change", "get", "/admin/orchestration/marketplacejob/{job}/change/", "admin", False),
    Door("admin job timeline", "get", "/admin/orchestration/marketplacejob/{job}/timeline/", "admin", False),
    Door("admin job cancel", "post", "/admin/orchestration/marketplacejob/{job}/control/cancel/", "admin", True),
    Door("admin job run now", "post", "/admin/orchestration/marketplacejob/{job}/control/run_now/", "admin", True),
    Door("admin job retry", "post", "/admin/orchestration/marketplacejob/{job}/control/retry/", "admin", True),
    Door("admin job action cancel", "post", "/admin/orchestration/marketplacejob/", "admin", True,
         {"action": "cancel", "_selected_action": "{job}", "index": "0"}),
    Door("admin job bulk cancel", "post", "/admin/orchestration/marketplacejob/bulk/cancel/", "admin", True,
         {"confirm": "1"}),
    Door("admin job list", "get", "/admin/orchestration/marketplacejob/", "admin", False),
    # --- admin: batches ---
    Door("admin batch change", "get", "/admin/orchestration/batch/{batch}/change/", "admin", False),
    Door("admin batch summary", "get", "/admin/orchestration/batch/{batch}/summary/", "admin", False),
    Door("admin batch cancel", "post", "/admin/orchestration/batch/{batch}/control/cancel/", "admin", True),
    Door("admin batch action cancel", "post", "/admin/orchestration/batch/", "admin", True,
         {"action": "cancel", "_selected_action": "{batch}", "index": "0"}),
    Door("admin batch list", "get", "/admin/orchestration/batch/", "admin", False),
    # --- admin: products, resources, accounts ---
    Door("admin product change", "get", "/admin/marketplaces/product/{product}/change/", "admin", False),
    Door("admin product edit", "post", "/admin/marketplaces/product/{product}/change/", "admin", True,
         {"sku": "{sku}", "title": "overwritten", "price": "1.00", "currency": "EUR",
          "quantity": "1", "condition": "good", "images": "[]"}),
    Door("admin product delete", "post", "/admin/marketplaces/product/{product}/delete/", "admin", True,
         {"post": "yes"}),
    Door("admin product list", "get", "/admin/marketplaces/product/", "admin", False),
    Door("admin resource pause", "post", "/admin/orchestration/resourcepolicy/", "admin", True,
         {"action": "pause", "_selected_action": "{resource}", "index": "0"}),
    # --- dashboard ---
    Door("dashboard", "get", "/dashboard/", "page", False),
    *[Door(f"dashboard panel {p}", "get", f"/dashboard/panels/{p}/", "page", False)
      for p in ("batches", "queues", "retrying", "throughput", "failures", "workers")],
    Door("dashboard retry", "post", "/dashboard/jobs/{job}/retry/", "page", True),
    # --- API ---
    Door("api job", "get", "/api/jobs/{job}", "api", False),
    Door("api jobs list", "get", "/api/jobs", "api", False),
    Door("api job cancel", "delete", "/api/jobs/{job}", "api", True),
    Door("api job retry", "post", "/api/jobs/{job}/retry", "api", True),
    Door("api job retry from step", "post", "/api/jobs/{job}/retry-from-step", "api", True, {"step_order": 1}),
    Door("api job run now", "post", "/api/jobs/{job}/run-now", "api", True),
    Door("api batch", "get", "/api/batches/{batch}", "api", False),
    Door("api batches list", "get", "/api/batches", "api", False),
    Door("api batch cancel", "post", "/api/batches/{batch}/cancel", "api", True),
    Door("api batch resume", "post", "/api/batches/{batch}/resume", "api", True),
    Door("api product", "get", "/api/products/{product}", "api", False),
    Door("api products list", "get", "/api/products?sku={sku}", "api", False),
    Door("api product upsert", "put", "/api/products/by-sku/{sku}", "api", True,
         {"title": "overwritten", "price": "1.00", "quantity": 1}, by_name=True),
    Door("api resources", "get", "/api/resources", "api", False),
    Door("api resource pause", "post", "/api/resources/{resource_key}/pause", "api", True,
         by_name=True),
    Door("api plans list", "get", "/api/plans", "api", False),
    # --- uploads ---
    Door("api upload", "get", "/api/uploads/{upload}", "api", False),
    Door("api upload part", "put", "/api/uploads/{upload}/parts/1", "api", True,
         headers={"X-Part-SHA256": "0" * 64}),
    Door("api upload complete", "post", "/api/uploads/{upload}/complete", "api", True),
    Door("api upload import", "post", "/api/uploads/{upload}/import", "api", True),
    Door("api upload delete", "delete", "/api/uploads/{upload}", "api", True),
    # --- webhooks ---
    Door("api webhook endpoint", "get", "/api/webhooks/endpoints/{webhook}", "api", False),
    Door("api webhook endpoints list", "get", "/api/webhooks/endpoints", "api", False),
    Door("api webhook update", "patch", "/api/webhooks/endpoints/{webhook}", "api", True,
         {"description": "overwritten"}),
    Door("api webhook rotate", "post", "/api/webhooks/endpoints/{webhook}/rotate-secret", "api", True),
    Door("api webhook ping", "post", "/api/webhooks/endpoints/{webhook}/ping", "api", True),
    Door("api webhook delete", "delete", "/api/webhooks/endpoints/{webhook}", "api", True),
    Door("api webhook deliveries", "get", "/api/webhooks/deliveries?endpoint={webhook}", "api", False),
    Door("admin webhook endpoint", "get", "/admin/webhooks/webhookendpoint/{webhook}/change/", "admin", False),
    # --- schedules and bulk operations ---
    Door("api schedule", "get", "/api/schedules/{schedule}", "api", False),
    Door("api schedules list", "get", "/api/schedules", "api", False),
    Door("api schedule update", "patch", "/api/schedules/{schedule}", "api", True,
         {"name": "overwritten"}),
    Door("api schedule run", "post", "/api/schedules/{schedule}/run", "api", True),
    Door("api schedule pause", "post", "/api/schedules/{schedule}/pause", "api", True),
    Door("api schedule delete", "delete", "/api/schedules/{schedule}", "api", True),
    Door("admin schedule", "get", "/admin/scheduler/schedule/{schedule}/change/", "admin", False),
    Door("api operation", "get", "/api/operations/{operation}", "api", False),
    Door("api operation cancel", "post", "/api/operations/{operation}/cancel", "api", True),
]  # fmt: skip
