"""Marketplace adapters: one ``StepProvider`` per marketplace, registered with the engine.

The engine finds them by name through ``orchestration.steps``; nothing outside
this package imports a marketplace module directly. To add a marketplace, write
its module (API client + steps + ``PROVIDER``) and list it in ``providers()``.
"""

from __future__ import annotations

from marketplaces.adapters.base import StaticProvider


def providers() -> list[StaticProvider]:
    """Every marketplace this project speaks to."""
    from marketplaces.adapters import ebay, etsy, vinted

    return [ebay.PROVIDER, etsy.PROVIDER, vinted.PROVIDER]


def register_providers() -> None:
    """Register every provider with the engine (idempotent: ``ready()`` may run twice)."""
    from orchestration.steps import register_provider

    for provider in providers():
        register_provider(provider, replace=True)
