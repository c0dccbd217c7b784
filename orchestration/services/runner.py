"""Temporary: the old path, while bench/ moves to ``orchestration.engine`` (removed before
this session ends)."""

from orchestration.engine.claims import claim_jobs
from orchestration.engine.execute import job_execute_now

__all__ = ["claim_jobs", "job_execute_now"]
