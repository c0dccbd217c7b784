"""Upload settings, read at call time (tests and operators can change them).

``settings.UPLOADS_<KEY>`` or the environment variable of the same name (worker and
server subprocesses in tests use the latter); defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

MIB = 1024 * 1024

DEFAULTS: dict[str, int] = {
    "DEFAULT_PART_SIZE": 8 * MIB,
    "MIN_PART_SIZE": 1 * MIB,  # every part but the last is at least this big
    "MAX_PART_SIZE": 64 * MIB,
    "MAX_PARTS": 10_000,
    "TENANT_QUOTA_BYTES": 50 * 1024 * MIB,  # declared sizes of a tenant's kept uploads
    "EXPIRE_HOURS": 24,  # an unfinished upload idle this long is expired (files removed)
}


def get(key: str) -> int:
    env = os.environ.get(f"UPLOADS_{key}")
    if env is not None:
        return int(env)
    return int(getattr(settings, f"UPLOADS_{key}", DEFAULTS[key]))


def root() -> Path:
    """Where every tenant's upload directories live."""
    env = os.environ.get("UPLOADS_ROOT")
    configured = env or getattr(settings, "UPLOADS_ROOT", None)
    return Path(configured or settings.BASE_DIR / ".data" / "uploads")
