"""The webhooks part of the JSON API (mounted by api.main under /api/webhooks)."""

from ninja import Router

router = Router(tags=["webhooks"])
