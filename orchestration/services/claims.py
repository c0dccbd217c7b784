"""Temporary: the old path, while orchestration/admin.py and bench/ move to
``orchestration.engine.claims`` (removed before this session ends)."""

from orchestration.engine.claims import resource_policies

__all__ = ["resource_policies"]
