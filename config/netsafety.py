"""Outbound HTTP to URLs that users supply (product images, webhooks): no SSRF.

A URL typed by staff must never make a worker read cloud metadata or an internal
service. Three layers:

- ``check_url(url)``: http(s) only; the host is resolved and every address must be
  public (not private, loopback, link-local, multicast, reserved, unspecified,
  shared/CGNAT or a cloud-metadata address); returns the checked addresses.
  ``UnsafeURL`` (a ``ValueError``) says why not.
- ``GuardedTransport``: an httpx transport whose connections go to an address that
  was checked *at connect time* (resolve, check, connect to that very IP; TLS still
  verifies the hostname), so a DNS answer that changes between the check and the
  connection (rebinding) cannot reach an internal address, and every redirect
  target is checked when it is connected to.
- ``fetch(url, ...)``: a GET through that transport following at most a few
  redirects (each re-checked), with a byte cap, an overall deadline and an optional
  content-type allow-list (images).

Settings: ``NETSAFETY_ALLOW_PRIVATE`` (default False; true only in development and
tests, where the sandbox marketplace listens on 127.0.0.1) and
``NETSAFETY_ALLOWED_HOSTS``, a list of ``"host:port"`` that are allowed whatever
they resolve to (the sandbox). Cloud-metadata addresses stay refused even when
private addresses are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance-metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, Oracle).
METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_SCHEMES = {"http": 80, "https": 443}


class UnsafeURL(ValueError):
    """The URL may not be fetched: bad scheme, unresolvable or a non-public address."""


class FetchRefused(ValueError):
    """The answer was refused: too large, too slow, or not the expected content type."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status_code: int
    content_type: str
    content: bytes
    headers: httpx.Headers

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings

    return getattr(settings, name, default)


def _allowed_hosts() -> set[tuple[str, int]]:
    allowed = set()
    for entry in _setting("NETSAFETY_ALLOWED_HOSTS", ()):
        host, _, port = str(entry).rpartition(":")
        if host and port.isdigit():
            allowed.add((host.strip("[]").lower(), int(port)))
    return allowed


def refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be connected to, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is None and address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
            mapped = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if mapped is not None:
            return refusal(mapped, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return "a cloud-metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    for attribute in ("loopback", "link_local", "private", "reserved"):
        if getattr(address, f"is_{attribute}"):
            return f"a {attribute.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def check_host(host: str, port: int, *, allow_private: bool | None = None) -> list[Address]:
    """Resolve ``host`` and return its addresses if every one of them may be reached."""
    host = host.strip("[]").lower().rstrip(".")
    if not host:
        raise UnsafeURL("the URL has no host")
    if (host, port) in _allowed_hosts():
        allow_private = True
    elif allow_private is None:
        allow_private = bool(_setting("NETSAFETY_ALLOW_PRIVATE", False))
    if host in METADATA_HOSTS:
        raise UnsafeURL(f"host {host!r} is a cloud-metadata name")
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UnsafeURL(f"host {host!r} does not resolve: {exc}") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise UnsafeURL(f"host {host!r} has no address")
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason:
            raise UnsafeURL(f"host {host!r} resolves to {address}, {reason}")
    return addresses


def check_url(url: str, *, allow_private: bool | None = None) -> list[Address]:
    """The addresses ``url`` would reach, after checking they are all allowed."""
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise UnsafeURL(f"only http and https URLs are allowed, not {parts.scheme or 'none'!r}")
    if parts.username or parts.password:
        raise UnsafeURL("URLs with credentials are not allowed")
    return check_host(
        parts.hostname or "",
        port or _SCHEMES[parts.scheme.lower()],
        allow_private=allow_private,
    )


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks at connect time, then connects to the checked address."""

    def __init__(self, allow_private: bool | None) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = check_host(host, port, allow_private=self.allow_private)
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # next address, like create_connection
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise UnsafeURL("unix sockets are not allowed")


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport that only connects to addresses ``check_host`` allows.

    No proxy (a proxy would do the connecting): httpx mounts the environment's proxies
    only on clients without an explicit transport, and ``guarded_client`` also sets
    ``trust_env=False``. The transport itself keeps ``trust_env`` for its TLS context, so
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (a company CA) still apply.
    """

    def __init__(self, *, allow_private: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool
        if not isinstance(pool, httpcore.ConnectionPool):  # pragma: no cover - httpx changed
            raise RuntimeError("GuardedTransport needs httpx's ConnectionPool")
        pool._network_backend = _GuardedBackend(allow_private)


def guarded_client(
    *, allow_private: bool | None = None, timeout: float | httpx.Timeout = 10.0, **kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` that cannot reach internal addresses (for webhooks and the like).

    It does not follow redirects by itself; a redirect it is asked to follow is checked
    again on connection.
    """
    return httpx.Client(
        transport=GuardedTransport(allow_private=allow_private),
        trust_env=False,
        timeout=timeout,
        follow_redirects=False,
        **kwargs,
    )


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def fetch(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    content_types: Collection[str] | None = None,
    max_redirects: int = 3,
    headers: Mapping[str, str] | None = None,
    allow_private: bool | None = None,
) -> Fetched:
    """GET ``url`` safely: checked addresses, re-checked redirects, size/time/type caps.

    ``content_types``: accepted media types (``"image/*"`` matches any image type);
    a success answer of another type raises ``FetchRefused``. Non-2xx answers come back
    (small bodies only) for the caller to classify. ``httpx`` transport errors and
    timeouts propagate as they are.
    """
    deadline = time.monotonic() + timeout
    check_url(url, allow_private=allow_private)
    with guarded_client(allow_private=allow_private, timeout=timeout) as client:
        current = httpx.URL(url)
        for _hop in range(max_redirects + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise httpx.ReadTimeout(f"fetching {url} took longer than {timeout:g}s")
            request = client.build_request(
                "GET", current, headers=headers, timeout=httpx.Timeout(remaining)
            )
            response = client.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    target = current.join(response.headers["location"])
                    check_url(str(target), allow_private=allow_private)
                    current = target
                    continue
                return _read(response, url, deadline, max_bytes, content_types)
            finally:
                response.close()
        raise FetchRefused(f"{url} redirected more than {max_redirects} times")


def _read(
    response: httpx.Response,
    url: str,
    deadline: float,
    max_bytes: int,
    content_types: Collection[str] | None,
) -> Fetched:
    content_type = response.headers.get("content-type", "")
    if response.is_success and content_types is not None:
        media = _base_type(content_type)
        accepted = any(
            media == wanted or (wanted.endswith("/*") and media.startswith(wanted[:-1]))
            for wanted in content_types
        )
        if not accepted:
            raise FetchRefused(
                f"{url} is {media or 'untyped'}, expected {', '.join(sorted(content_types))}"
            )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"{url} is {int(declared):,} bytes, more than {max_bytes:,}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchRefused(f"{url} is more than {max_bytes:,} bytes")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"{url} was still sending at the deadline")
    return Fetched(
        url=str(response.url),
        status_code=response.status_code,
        content_type=content_type,
        content=bytes(body),
        headers=response.headers,
    )
