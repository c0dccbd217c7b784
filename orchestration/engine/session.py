"""A worker's database session: what a lost connection looks like, waiting for it to come
back, the session settings drains run with, and the worker's name on the runs it claims.

The bottom of the engine: every other engine module may import this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

from django.db import DatabaseError, connection

from orchestration import conf
from tenants.db import DATABASE_LOST, use_public_schema

logger = logging.getLogger(__name__)


class RunFenced(Exception):
    """This worker's run is no longer current (recovered or cancelled elsewhere)."""


def worker_id() -> str:
    """``<host>:<pid>``: who holds a run or a drain slot (the sweep checks the pid is alive)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def wait_for_database(*, timeout: float) -> bool:
    """Close the broken connection and poll until a new one answers (True) or ``timeout``."""
    end = time.monotonic() + timeout
    delay = 0.1
    while True:
        with contextlib.suppress(Exception):
            connection.close()
        try:
            use_public_schema()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DATABASE_LOST:
            if time.monotonic() >= end:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def tune_worker_session() -> None:
    """Workers' commits wait for the WAL flush by default (``SYNCHRONOUS_COMMIT=1``).

    ``ORCHESTRATION_SYNCHRONOUS_COMMIT=0`` is an operator's opt-out: commits then return
    before the flush, and a PostgreSQL crash (not a worker crash) may lose the last
    fraction of a second of committed step records; those steps run again and their
    idempotence check finds the effect already there (DESIGN invariant 3). The database
    itself stays consistent (docs/benchmarks.md, "Durability").
    """
    with connection.cursor() as cursor:
        if not conf.get("SYNCHRONOUS_COMMIT"):
            cursor.execute("SET synchronous_commit TO off")
        else:
            # Said, not assumed: a database or role default of ``off`` does not make the
            # steps' commits asynchronous behind the operator's back.
            cursor.execute("SET synchronous_commit TO on")
            if conf.get("COMMIT_DELAY_US") > 0:
                _set_group_commit(cursor)
        # The runner's hot statements are server-side prepared; with the default plan cache
        # mode PostgreSQL re-plans a custom plan for each execution (their CTEs cost more to
        # plan than to run: measured 60% of their time). Their generic plan is the same
        # primary-key lookups, so plan once per connection.
        cursor.execute("SET plan_cache_mode TO force_generic_plan")


def _set_group_commit(cursor) -> None:
    """``commit_delay``/``commit_siblings`` for this session (durable commits only): one WAL
    flush then covers the steps other workers commit meanwhile (docs/benchmarks.md). The
    settings need a superuser or ``GRANT SET ON PARAMETER``; refused, the drain goes on
    without them (the session is in autocommit here, so the error leaves nothing behind)."""
    delay = int(conf.get("COMMIT_DELAY_US"))
    siblings = int(conf.get("COMMIT_SIBLINGS"))
    try:
        cursor.execute(f"SET commit_delay TO {delay}")
        cursor.execute(f"SET commit_siblings TO {siblings}")
    except DatabaseError as exc:
        logger.warning("commit_delay not set (%s): commits flush one by one", exc)
