"""The client address that login throttling (django-axes) counts failures against.

Behind the TLS proxy of production (``TRUSTED_PROXY_HOPS`` = 1), ``REMOTE_ADDR`` is the
proxy's own address, the same for every visitor: the client is the address that proxy
appended to ``X-Forwarded-For`` (the right-most entry; entries further left are whatever
the client sent and cannot be trusted). Without a proxy (development), ``REMOTE_ADDR``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    hops = int(getattr(settings, "TRUSTED_PROXY_HOPS", 0))
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if hops > 0 and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")
