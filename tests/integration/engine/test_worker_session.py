"""A drain's session settings (issue 17): durable commits by default, the operator's
opt-out, and group commit (commit_delay) only when asked for and only with durable commits."""

import pytest
from django.db import connection
from django.test import override_settings

from orchestration import conf
from orchestration.engine import session


def _show(name):
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


@pytest.fixture
def tuned_session(tenant_a):
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "RESET synchronous_commit; RESET plan_cache_mode; RESET commit_delay; "
            "RESET commit_siblings"
        )


def test_workers_commit_durably_by_default(tuned_session):
    assert conf.DEFAULTS["SYNCHRONOUS_COMMIT"] == 1
    with connection.cursor() as cursor:  # whatever the database's or role's default says
        cursor.execute("SET synchronous_commit TO off")
    session.tune_worker_session()
    assert _show("synchronous_commit") == "on"
    assert _show("commit_delay") == "0"


def test_operator_opt_out_skips_the_flush_wait(tuned_session):
    with override_settings(ORCHESTRATION={"SYNCHRONOUS_COMMIT": 0, "COMMIT_DELAY_US": 800}):
        session.tune_worker_session()
    assert _show("synchronous_commit") == "off"
    assert _show("commit_delay") == "0"  # no group commit without durable commits


def test_group_commit_is_set_per_session_when_asked(tuned_session):
    with override_settings(ORCHESTRATION={"COMMIT_DELAY_US": 800, "COMMIT_SIBLINGS": 2}):
        session.tune_worker_session()
    assert _show("synchronous_commit") == "on"
    assert _show("commit_delay") == "800"
    assert _show("commit_siblings") == "2"
