"""The planning part of the JSON API (mounted by api.main under /api/planning)."""

from ninja import Router

router = Router(tags=["planning"])
