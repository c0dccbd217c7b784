"""Per-tenant API tokens: shown once at creation, stored as a SHA-256 hash, revocable.

A token is ``mpo_<prefix>_<secret>``; the prefix (public, indexed) finds the row, the hash
of the whole token is compared in constant time. The row lives in the tenant's schema, so
a token of tenant B presented on tenant A's host finds nothing: 401.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "mpo"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    name = models.CharField(max_length=100, help_text="Who or what uses it (e.g. 'ERP sync')")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    read_only = models.BooleanField(
        default=False, help_text="Read-only tokens have the viewer role's rights"
    )
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.prefix}_…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> tuple[str, str]:
        """A new (prefix, raw token)."""
        prefix = secrets.token_hex(4)
        return prefix, f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
