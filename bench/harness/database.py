"""The database server and the throw-away database a benchmark creates, migrates and drops."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.harness.base import BASE_DIR, BenchError


def server_url() -> tuple[str, bool]:
    """(a DATABASE_URL on the server the settings use, whether it is the embedded one).

    Same rule as ``config.settings``: ``DATABASE_URL`` (environment or ``.env``), else the
    embedded PostgreSQL under ``.data/`` (started here if stopped; this process then owns
    it and stops it when it exits).
    """
    import environ

    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, False
    from config import embedded_pg

    return embedded_pg.ensure_running(), True


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced (host, socket path and options kept).

    Works for ``postgresql://user@host:port/db?opts`` and for the embedded server's
    socket form ``postgresql://postgres@//path/to/socketdir/db``.
    """
    parts = urlsplit(url)
    head, _, _ = parts.path.rpartition("/")
    return urlunsplit(parts._replace(path=f"{head}/{name}"))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def connect(url: str):
    """A plain psycopg connection (autocommit) for CREATE/DROP DATABASE."""
    import environ
    import psycopg

    cfg = environ.Env.db_url_config(url)
    params: dict[str, Any] = {
        "dbname": cfg["NAME"],
        "user": cfg.get("USER") or None,
        "password": cfg.get("PASSWORD") or None,
        "host": cfg.get("HOST") or None,
        "port": cfg.get("PORT") or None,
        **cfg.get("OPTIONS", {}),
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)


class BenchDatabase:
    """``CREATE DATABASE bench_<random>`` on the server; dropped on exit, even on failure."""

    def __init__(self, server: str, prefix: str = "bench"):
        self.server = server
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self.url = with_database(server, self.name)
        self.keep = False  # leave it in place (debugging)

    def __enter__(self) -> BenchDatabase:
        with connect(self.server) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        self.drop()

    def drop(self) -> None:
        _close_django_connections()
        if self.keep:
            print(f"  kept database {self.name}: {redact(self.url)}")
            return
        try:
            with connect(self.server) as conn:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                except Exception:  # PostgreSQL < 13: no FORCE
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        except Exception as exc:
            print(
                f"!! could not drop database {self.name}: {exc} (drop it by hand)", file=sys.stderr
            )


def _close_django_connections() -> None:
    if "django.db" not in sys.modules:
        return
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        if "orchestration.live" in sys.modules:
            # This process's live publisher holds its own connections to the database (the
            # PostgreSQL channel layer's pool): stopped before the drop, not at exit, where
            # its pool would be retrying a dropped database as the interpreter ends.
            from orchestration import live

            live.stop_publisher()
        connections.close_all()


def setup_django(env: Mapping[str, str]) -> None:
    """Set Django up in this process against ``env['DATABASE_URL']`` (before settings load)."""
    if "config.settings" in sys.modules:
        raise BenchError(
            "Django settings were already loaded: run each benchmark in its own process"
        )
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    import logging

    import django

    django.setup()
    logging.getLogger("django-q").setLevel(logging.WARNING)  # no line per enqueued task


def announce_database(db: BenchDatabase, server: str, embedded: bool) -> None:
    where = "embedded PostgreSQL" if embedded else "DATABASE_URL server"
    print(f"  database {db.name} on the {where} ({redact(server)})")


def describe_database(embedded: bool, name: str, **extra: Any) -> dict[str, Any]:
    """Which server, its version and the bench database (Django must be set up)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
    host = connection.settings_dict.get("HOST") or ""
    return {
        "server": "embedded (pgserver)" if embedded else "DATABASE_URL",
        # A host that is a directory is the server's Unix socket; the workers then talk to
        # it without going through the kernel's TCP loopback stack.
        "transport": "unix socket" if not host or host.startswith("/") else f"tcp ({host})",
        "server_version": version,
        "autovacuum": autovacuum,
        "bench_database": name,
        **extra,
    }


def vacuum_analyze(url: str) -> float:
    """``VACUUM (ANALYZE)`` the bench database (every system's tables alike); seconds taken.

    What autovacuum does between runs on a server that has it. This machine's shared
    server runs with ``autovacuum = off``: without this, each round inherits every earlier
    round's dead rows and table statistics of an empty database, and every system's
    queue queries slow down round after round (the engine's claim read ~6,000 dead index
    entries per claim by the fifth round).
    """
    started = time.perf_counter()
    with connect(url) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return time.perf_counter() - started


@contextlib.contextmanager
def throwaway_database(*, keep: bool = False) -> Iterator[tuple[BenchDatabase, bool]]:
    """A fresh ``bench_<random>`` database on the settings' server, announced, dropped on exit
    (unless ``keep``); yields it and whether the server is the embedded one."""
    server, embedded = server_url()
    with BenchDatabase(server) as db:
        db.keep = keep
        announce_database(db, server, embedded)
        yield db, embedded
