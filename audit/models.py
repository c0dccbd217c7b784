"""The audit trail: who did what, when, from which door, on which objects.

Rows are only ever inserted (``audit.services.record``); the admin shows them read-only and
a trigger (migration 0002) rejects UPDATE at the database, so an entry cannot be rewritten.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    """One staff action. ``targets`` (the ``objects`` given to ``record``) is a list of ``[kind, id]`` pairs (ids as strings),
    searchable with ``targets__contains=[[kind, id]]`` (GIN index)."""

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor = models.CharField(max_length=150)
    door = models.CharField(max_length=120, help_text="admin, dashboard, command, api:<token>")
    action = models.CharField(max_length=64)
    targets = models.JSONField(default=list, blank=True)
    count = models.PositiveIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "activity entry"
        verbose_name_plural = "activity"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at"], name="audit_created_idx"),
            models.Index(fields=["action", "-created_at"], name="audit_action_created_idx"),
            GinIndex(fields=["targets"], name="audit_targets_gin", opclasses=["jsonb_path_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} ({self.door}) {self.action}"

    @property
    def object_count(self) -> int:
        return self.count if self.count is not None else len(self.targets)
