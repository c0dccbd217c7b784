"""One POST to a receiver: guarded, bounded, kept alive.

``http.client`` rather than httpx: a delivery is one small POST, and httpx's per-request
cost was 3x http.client's on this machine (bench/webhooks.py needs ≥ 500/s). The safety is
the same as ``config.netsafety``'s transport: the host is resolved and checked *when the
connection is made* (``check_host``: no private, loopback or link-local address unless
allowed, never a metadata address) and the socket goes to the checked address (a DNS
answer that changes in between cannot reach an internal address); TLS still verifies the
hostname. Redirects are never followed (a 3xx is an answer like any other); at most
``max_bytes`` of the answer are read; each socket operation has a timeout.

Connections are kept per thread and per (scheme, host, port).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.netsafety import UnsafeURL, check_host

_local = threading.local()
_all: list[http.client.HTTPConnection] = []
_all_lock = threading.Lock()


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def _connect(host: str, port: int, *, timeout: float, allow_private: bool) -> socket.socket:
    last: OSError | None = None
    for address in check_host(host, port, allow_private=allow_private):
        try:
            sock = socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:  # next address, like create_connection itself
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError(f"no address of {host} could be reached")


class _Guarded(http.client.HTTPConnection):
    allow_private = False
    connect_timeout = 5.0

    def connect(self) -> None:
        self.sock = _connect(self.host, self.port, timeout=self.connect_timeout,
                             allow_private=self.allow_private)  # fmt: skip
        self.sock.settimeout(self.timeout)


class _GuardedTLS(_Guarded):
    default_port = 443
    _context = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _connection(scheme: str, host: str, port: int, *, timeout: float, connect_timeout: float,
                allow_private: bool) -> tuple[http.client.HTTPConnection, bool]:  # fmt: skip
    """This thread's connection to the origin, and whether it was used before."""
    pool: dict = getattr(_local, "pool", None) or {}
    _local.pool = pool
    key = (scheme, host, port, allow_private)
    conn = pool.get(key)
    if conn is not None:
        conn.timeout = timeout
        return conn, True
    kind = _GuardedTLS if scheme == "https" else _Guarded
    conn = kind(host, port, timeout=timeout)
    conn.allow_private, conn.connect_timeout = allow_private, connect_timeout
    pool[key] = conn
    with _all_lock:
        _all.append(conn)
    return conn, False


def _drop(scheme: str, host: str, port: int, allow_private: bool) -> None:
    conn = getattr(_local, "pool", {}).pop((scheme, host, port, allow_private), None)
    if conn is not None:
        conn.close()


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float,
         connect_timeout: float, max_bytes: int, allow_private: bool) -> Answer:  # fmt: skip
    """POST ``body``; the status and at most ``max_bytes`` of the answer. Raises
    ``UnsafeURL``, ``OSError`` (refused, timeout…) or ``http.client.HTTPException``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs are allowed, not {scheme or 'none'!r}")
    if parts.username or parts.password:
        raise UnsafeURL("URLs with credentials are not allowed")
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for attempt in (1, 2):
        conn, reused = _connection(scheme, host, port, timeout=timeout,
                                   connect_timeout=connect_timeout, allow_private=allow_private)  # fmt: skip
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read(max_bytes)
            if (
                not response.isclosed() or response.will_close
            ):  # answer longer than the cap (or unread): drop it
                _drop(scheme, host, port, allow_private)
            return Answer(response.status, content)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            _drop(scheme, host, port, allow_private)
            if reused and attempt == 1:
                continue  # the receiver closed an idle kept-alive connection: once more, fresh
            raise
        except BaseException:
            _drop(scheme, host, port, allow_private)
            raise
    raise AssertionError("unreachable")


def close_all() -> None:
    """Close every connection of this process (tests, after their receiver stopped)."""
    with _all_lock:
        for conn in _all:
            conn.close()
        _all.clear()
