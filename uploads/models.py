"""Uploads (a file sent in parts, then assembled and verified) and their parts.

An upload's bytes live on disk under ``storage.upload_dir`` (one directory per tenant
schema and upload id); these rows say what was declared, which parts arrived and which
import job and publish batch the file led to. Written only by ``uploads.services`` (parts
through ``uploads.parts``) and the import steps (``uploads.importing``).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class Upload(models.Model):
    class State(models.TextChoices):
        RECEIVING = "receiving", "Receiving parts"
        COMPLETED = "completed", "Complete (verified)"
        FAILED = "failed", "Failed (checksum mismatch)"
        ABORTED = "aborted", "Aborted"
        EXPIRED = "expired", "Expired"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON Lines"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Shown to people only; never part of a path (storage names files itself).
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Declared size in bytes")
    sha256 = models.CharField(max_length=64, help_text="Declared SHA-256 of the whole file (hex)")
    part_size = models.PositiveIntegerField()
    part_count = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.RECEIVING)
    format = models.CharField(max_length=8, choices=Format.choices, blank=True)
    error_message = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Aborted, failed or expired")
    import_job = models.ForeignKey(
        "orchestration.MarketplaceJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    publish_batch = models.ForeignKey(
        "orchestration.Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "product import"
        indexes = [
            models.Index(
                fields=["created_at"],
                name="upload_receiving_idx",
                condition=models.Q(state="receiving"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_state_display()})"

    def part_length(self, index: int) -> int:
        """Bytes part ``index`` (1-based) must have: ``part_size``, the last one the rest."""
        if index < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)


class UploadPart(models.Model):
    """One received part, verified against its own checksum and written at its offset."""

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField(help_text="1-based")
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["upload", "index"]
        constraints = [
            models.UniqueConstraint(fields=["upload", "index"], name="upload_part_unique_index"),
        ]

    def __str__(self) -> str:
        return f"part {self.index} of {self.upload_id}"
