"""Embedded PostgreSQL for machines with no ``DATABASE_URL``.

The server binaries come from the ``pgserver`` wheel; data lives in ``.data/pg``
(git-ignored). The server listens on a Unix socket only. The first process that
finds it stopped starts it and owns it: that process stops it when it exits.
Every other process (workers, the ASGI server, test subprocesses) reuses it.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EMBEDDED_PG_DIR", BASE_DIR / ".data" / "pg"))
DEFAULT_DB_NAME = "orchestrator"

_url: str | None = None


def _socket_url(socket_dir: str, database: str) -> str:
    # django-environ reads a path-style host: postgresql://user@//sock/dir/dbname
    return f"postgresql://postgres@/{socket_dir}/{database}"


def ensure_running(database: str = DEFAULT_DB_NAME) -> str:
    """Start (or join) the embedded server and return a DATABASE_URL for ``database``."""
    global _url
    if _url is not None:
        return _url
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (pgserver's lock file dir)
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: only machines without DATABASE_URL need it
        from pgserver.utils import PostmasterInfo

    DATA_DIR.parent.mkdir(parents=True, exist_ok=True)
    info = PostmasterInfo.read_from_pgdata(DATA_DIR) if DATA_DIR.exists() else None
    already_running = info is not None and info.is_running()
    # cleanup_mode=None: pgserver's own reference counting is per pid list on disk and
    # breaks with forked workers; we stop the server ourselves from the owning process.
    server = pgserver.get_server(DATA_DIR, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    assert socket_dir is not None
    if not already_running:
        owner = os.getpid()
        atexit.register(_stop_if_owner, owner)
        _allow_connections(server)
        logger.info("embedded PostgreSQL started in %s", DATA_DIR)
    _create_database(server, database)
    _url = _socket_url(str(socket_dir), database)
    return _url


# The server's default (100) is too few for the test suite's parallel workers, each with its
# worker clusters, ASGI servers and channel-layer pools (``make test``).
MAX_CONNECTIONS = 400


def _allow_connections(server) -> None:
    """Raise ``max_connections`` once (``ALTER SYSTEM``, kept in the data directory); the
    setting needs a restart, done here by the process that just started the server."""
    shown = server.psql("SHOW max_connections;")
    current = next((int(w) for w in shown.split() if w.isdigit()), 0)
    if current >= MAX_CONNECTIONS:
        return
    from pgserver import _commands

    server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # generated at import
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=DATA_DIR, user=user)


def _create_database(server, database: str) -> None:
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')


def _stop_if_owner(owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child inherited the handler
        return
    stop()


def stop() -> None:
    """Stop the embedded server (fast shutdown: disconnects clients)."""
    from pgserver import _commands

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # generated at import
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=DATA_DIR, user=user)
    except (subprocess.CalledProcessError, FileNotFoundError):
        logger.debug("embedded PostgreSQL was not running")
