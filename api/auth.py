"""Who is calling: an API token (Bearer) or a staff session of this tenant.

``request.auth`` becomes an :class:`ApiPrincipal`. Writes need ``can_write``: a token that
is not read-only, or a staff user with the change permission on jobs (the viewer role reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer

from api.errors import ApiError
from api.services import token_authenticate
from audit.services import record
from tenants.db import current_schema

WRITE_PERMISSION = "orchestration.change_marketplacejob"
READ_PERMISSION = "orchestration.view_marketplacejob"


@dataclass(frozen=True)
class ApiPrincipal:
    kind: str  # "token" or "session"
    label: str  # the token's name or the username: what the audit trail records
    can_write: bool
    schema_name: str
    token_id: int | None = None
    user_id: int | None = None

    def __str__(self) -> str:  # the throttle's key: per tenant and caller
        return f"{self.schema_name}:{self.kind}:{self.token_id or self.user_id}"

    @property
    def door(self) -> str:
        return f"api:{self.label}" if self.kind == "token" else "api-session"


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiPrincipal | None:
        if len(token) > 200:
            return None
        found = token_authenticate(token)
        if found is None:
            return None
        return ApiPrincipal(
            kind="token",
            label=found.name,
            can_write=not found.read_only,
            schema_name=current_schema(),
            token_id=found.pk,
        )


class StaffSessionAuth(APIKeyCookie):
    """A logged-in staff user of this tenant (CSRF checked on unsafe methods)."""

    param_name = "sessionid"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiPrincipal | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            return None
        if not user.has_perm(READ_PERMISSION):
            return None
        return ApiPrincipal(
            kind="session",
            label=user.get_username(),
            can_write=user.has_perm(WRITE_PERMISSION),
            schema_name=current_schema(),
            user_id=user.pk,
        )


def principal(request: HttpRequest) -> ApiPrincipal:
    return request.auth  # type: ignore[attr-defined]


def audit(
    request: HttpRequest,
    action: str,
    objects: list[tuple[str, object]],
    *,
    count: int | None = None,
    details: dict | None = None,
) -> None:
    """Record the caller's action in the audit trail (call it inside the action's transaction)."""
    who = principal(request)
    record(who.label, who.door, action, objects, count=count, details=details)


def require_write(request: HttpRequest) -> ApiPrincipal:
    """The caller, if it may change things; else 403 (read-only token or viewer)."""
    who = principal(request)
    if not who.can_write:
        raise ApiError(403, "forbidden", "this token or user is read-only")
    return who
