"""Every marketplace this project speaks to, registered with the engine at start-up
(``MarketplacesConfig.ready``). To add a marketplace, write its module (API client +
steps + ``PROVIDER``) and list it here."""

from __future__ import annotations

from marketplaces.adapters import ebay, etsy, vinted
from marketplaces.adapters.base import StaticProvider
from orchestration.steps import register_provider


def providers() -> list[StaticProvider]:
    """Every marketplace this project speaks to."""
    return [ebay.PROVIDER, etsy.PROVIDER, vinted.PROVIDER]


def register_providers() -> None:
    """Register every provider with the engine (idempotent: ``ready()`` may run twice)."""
    for provider in providers():
        register_provider(provider, replace=True)
