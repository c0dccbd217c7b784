"""Marketplace adapters: one ``StepProvider`` per marketplace, registered with the engine
(``registry.py``).

The engine finds them by name through ``orchestration.steps``; nothing outside
this package imports a marketplace module directly.
"""
