"""Token lifecycle: create (the raw token is returned once), revoke, authenticate."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from api.models import TOKEN_PREFIX, ApiToken, hash_token
from audit.services import record

# last_used_at is written at most this often per token (no write per request).
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenError(ValueError):
    pass


def token_create(
    *, name: str, read_only: bool = False, created_by: str = "", door: str = ""
) -> tuple[ApiToken, str]:
    """A new token and its raw value (shown once). With ``door``, the creation is audited."""
    name = (name or "").strip()
    if not name:
        raise TokenError("a token needs a name")
    if len(name) > 100:
        raise TokenError("a token's name has at most 100 characters")
    prefix, raw = ApiToken.generate()
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name,
            prefix=prefix,
            key_hash=hash_token(raw),
            read_only=read_only,
            created_by=created_by[:150],
        )
        if door:
            record(created_by or door, door, "token.create", [("api_token", token.pk)],
                   details={"name": name, "read_only": read_only})  # fmt: skip
    return token, raw


def token_revoke(*, token_id: int, actor: str = "", door: str = "") -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.get(pk=token_id)
        if token.revoked_at is None:
            ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            token.refresh_from_db()
            if door:
                record(actor or door, door, "token.revoke", [("api_token", token.pk)],
                       details={"name": token.name})  # fmt: skip
    return token


def token_authenticate(raw: str) -> ApiToken | None:
    """The active token ``raw`` names in the current tenant's schema, or None."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or len(parts[1]) > 12:
        return None
    token = ApiToken.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.key_hash, hash_token(raw)):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
