"""Writing the audit trail. ``record`` is the one writer; call it inside the transaction of
the action it records, so the entry commits (or rolls back) with it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.models import AuditEntry

DOORS = ("admin", "dashboard", "command", "api-session")
_API_TOKEN_DOOR = re.compile(r"^api:.{1,100}$")
# An entry names at most this many objects; ``count`` keeps the full number (a bulk
# operation over 100,000 jobs names its operation and filter, not every job).
MAX_OBJECTS = 1000


@dataclass(frozen=True)
class Actor:
    """Who acts (a username, a token name) and through which door (see ``record``)."""

    name: str
    door: str


class AuditError(ValueError):
    """A malformed entry (unknown door, empty actor or action)."""


def door_is_valid(door: str) -> bool:
    return door in DOORS or bool(_API_TOKEN_DOOR.match(door))


def record(
    actor: str,
    door: str,
    action: str,
    objects: Iterable[tuple[str, Any]] = (),
    count: int | None = None,
    details: dict | None = None,
) -> AuditEntry:
    """Record one staff action.

    ``door`` is "admin", "dashboard", "command", "api:<token name>" or "api-session";
    ``objects`` are ``(kind, id)`` pairs such as ``("job", 12)``; ``count`` is how many
    objects the action touched when that is more than the pairs given (defaults to their
    number when more than ``MAX_OBJECTS`` are given)."""
    if not door_is_valid(door):
        raise AuditError(
            f"unknown door {door!r}: expected one of {', '.join(DOORS)} or 'api:<token name>'"
        )
    if not actor or not actor.strip():
        raise AuditError("an audit entry needs an actor")
    if not action or not action.strip():
        raise AuditError("an audit entry needs an action")
    pairs: list[list[str]] = []
    total = 0
    for kind, object_id in objects:
        total += 1
        if len(pairs) < MAX_OBJECTS:
            pairs.append([str(kind), str(object_id)])
    if count is None and total > len(pairs):
        count = total
    return AuditEntry.objects.create(
        actor=actor.strip()[:150],
        door=door[:120],
        action=action.strip()[:64],
        targets=pairs,
        count=count,
        details=details or {},
    )
