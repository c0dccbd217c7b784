"""WebSocket scope middleware: tenant from the Host header, user inside that tenant.

Channels runs every consumer's sync DB calls on one shared thread, so nothing
here may rely on the connection's current search_path: each lookup activates
its schema explicitly (PITFALLS: "Between WebSocket consumers", "Channels auth").
"""

from __future__ import annotations

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.models import AnonymousUser
from django.utils.crypto import constant_time_compare
from django_tenants.utils import get_public_schema_name, remove_www, schema_context, tenant_context

from tenants.models import Domain

CLOSE_UNKNOWN_HOST = 4404


def _host_from_scope(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return remove_www(value.decode("latin1").split(":")[0].lower())
    return ""


@database_sync_to_async
def _tenant_for_host(host: str):
    with schema_context(get_public_schema_name()):
        domain = Domain.objects.select_related("tenant").filter(domain=host).first()
        return domain.tenant if domain else None


class TenantFromHostMiddleware(BaseMiddleware):
    """Puts ``scope["tenant"]``; closes the socket (4404) for an unknown host."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        tenant = await _tenant_for_host(_host_from_scope(scope))
        if tenant is None:
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": CLOSE_UNKNOWN_HOST})
            return None
        return await super().__call__(dict(scope, tenant=tenant), receive, send)


def _user_in_tenant(tenant, session):
    """django.contrib.auth.get_user, but inside the tenant's schema."""
    with tenant_context(tenant):
        try:
            user_id = session[SESSION_KEY]
            backend_path = session[BACKEND_SESSION_KEY]
        except KeyError:
            return AnonymousUser()
        backend = load_backend(backend_path)
        user = backend.get_user(user_id)
        if user is None:
            return AnonymousUser()
        session_hash = session.get(HASH_SESSION_KEY)
        verifier = getattr(user, "get_session_auth_hash", None)
        if verifier is not None and not (
            session_hash and constant_time_compare(session_hash, verifier())
        ):
            return AnonymousUser()
        return user


class TenantAuthMiddleware(AuthMiddleware):
    async def resolve_scope(self, scope):
        scope["user"]._wrapped = await database_sync_to_async(_user_in_tenant)(
            scope["tenant"], scope["session"]
        )


def TenantWebsocketStack(inner):
    """Host → tenant, cookies, a lazy session (read in the tenant by the auth step), user."""
    return TenantFromHostMiddleware(
        CookieMiddleware(SessionMiddleware(TenantAuthMiddleware(inner)))
    )
