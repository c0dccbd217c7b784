"""The uploads part of the JSON API (mounted by api.main under /api/uploads)."""

from ninja import Router

router = Router(tags=["uploads"])
