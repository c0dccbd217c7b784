"""A local stand-in for eBay, Etsy and Vinted: ``python -m marketplaces.sandbox``.

A small ASGI app served by uvicorn, with no Django: it speaks the marketplaces'
API shapes (eBay Sell Inventory, Etsy Open API v3, the Vinted bridge over
WebSocket), keeps per-shop state in memory, writes every side effect to a
ledger, and injects faults on request. See docs/marketplaces.md.
"""
