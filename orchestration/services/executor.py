"""Temporary: the old path, while bench/ moves to ``orchestration.engine`` (removed before
this session ends)."""

from orchestration.engine.executor import StepExecutor

__all__ = ["StepExecutor"]
