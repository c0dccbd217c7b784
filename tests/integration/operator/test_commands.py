"""The operator's commands: --tenant or --all-tenants, --json on reads, bad input → a
message on stderr and a non-zero exit (no traceback), audit entries with door "command"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.models import AuditEntry
from operations.models import Operation
from orchestration.models import MarketplaceJob, ResourcePolicy
from orchestration.services import batch_cancel, batch_create
from scheduler.models import Schedule

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture(autouse=True)
def as_ops(monkeypatch):
    monkeypatch.setenv("ORCHESTRATION_ACTOR", "ops")


def test_schedules_create_list_run_pause(engine, products):
    created = json.loads(run("schedules", "--tenant", "test_alpha", "--create", "nightly",
                             "--action", "sync", "--marketplace", "ebay", "--all-products",
                             "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--json"))  # fmt: skip
    assert created["when"] == "cron '0 2 * * *' (Europe/Paris)"
    listed = json.loads(run("schedules", "--tenant", "test_alpha", "--json"))
    assert [s["name"] for s in listed] == ["nightly"]
    ran = json.loads(
        run("schedules", "--tenant", "test_alpha", "--run", str(created["id"]), "--json")
    )
    assert ran["outcome"] == "started" and ran["batch"]
    run("schedules", "--tenant", "test_alpha", "--pause", str(created["id"]))
    assert Schedule.objects.get().active is False
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "door", "actor"))
    assert actions == [("schedule.create", "command", "ops"), ("schedule.run_now", "command", "ops"),
                       ("schedule.pause", "command", "ops")]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["schedules", "--tenant", "nope"], "unknown tenant"),
        (["schedules"], "--tenant <schema> or --all-tenants"),
        (
            [
                "schedules",
                "--tenant",
                "test_alpha",
                "--create",
                "x",
                "--marketplace",
                "ebay",
                "--all-products",
                "--cron",
                "99 * * * *",
            ],
            "bad cron expression",
        ),
        (["schedules", "--tenant", "test_alpha", "--run", "424242"], "does not exist"),
        (["prune", "--tenant", "nope"], "unknown tenant"),
        (["pause", "--tenant", "test_alpha", "--resource", "nowhere"], "unknown resource"),
        (["run_now", "--tenant", "test_alpha", "999999"], "nothing was run now"),
        (["jobs_bulk", "--tenant", "test_alpha", "retry", "--status", "sleepy"], "unknown status"),
        (["jobs_bulk", "--tenant", "test_alpha", "--stop", "4242", "retry"], "does not exist"),
    ],
)
def test_bad_input_is_a_message(engine, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not Schedule.objects.exists() and not AuditEntry.objects.exists()


def test_bad_input_exits_non_zero_without_traceback(tx_tenant_a):
    env = {**os.environ, "DATABASE_URL": _database_url()}
    done = subprocess.run(
        [sys.executable, "manage.py", "schedules", "--tenant", "test_alpha", "--create", "x",
         "--marketplace", "ebay", "--all-products", "--cron", "0 0 31 2 7 1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "five fields" in done.stderr and "Traceback" not in done.stderr


def _database_url() -> str:
    from tests.helpers import database_url

    return database_url(connection.settings_dict)


def test_pause_resume_resource_and_tenant(engine):
    run("pause", "--tenant", "test_alpha", "--resource", "testmkt")
    assert ResourcePolicy.objects.get(key="testmkt").paused
    run("resume", "--tenant", "test_alpha", "--resource", "testmkt")
    assert not ResourcePolicy.objects.get(key="testmkt").paused
    out = json.loads(run("pause", "--tenant", "test_alpha", "--json"))
    assert out == {"tenant": "test_alpha", "paused": True}
    status = json.loads(run("status", "--all-tenants", "--json"))
    assert status["test_alpha"]["paused"] is True and status["test_beta"]["paused"] is False
    run("resume", "--tenant", "test_alpha")
    assert [a for (a,) in AuditEntry.objects.order_by("id").values_list("action")] == [
        "resource.pause", "resource.resume", "tenant.pause", "tenant.resume"]  # fmt: skip


def test_status_table_of_every_tenant(engine):
    batch_create(name="b", jobs=[engine.spec() for _ in range(2)])
    table = run("status", "--all-tenants")
    lines = table.splitlines()
    assert lines[0].startswith("tenant") and "queued" in lines[0]
    alpha = next(line for line in lines if line.startswith("test_alpha"))
    assert alpha.split()[1] == "2"  # two queued jobs
    assert any(line.startswith("test_beta") for line in lines)


def test_jobs_bulk_here_and_run_now(engine):
    batch = batch_create(name="b", jobs=[engine.spec() for _ in range(3)])
    batch_cancel(batch_id=batch.pk)
    out = json.loads(run("jobs_bulk", "--tenant", "test_alpha", "retry", "--status",
                         "cancelled", "--batch", str(batch.pk), "--here", "--json"))  # fmt: skip
    assert (out["status"], out["succeeded"], out["total"]) == ("done", 3, 3)
    assert Operation.objects.get().door == "command"
    job = MarketplaceJob.objects.filter(batch=batch).first()
    assert job is not None
    run("run_now", "--tenant", "test_alpha", str(job.pk))
    job.refresh_from_db()
    assert job.direct


def test_prune_dry_run_json(engine):
    out = json.loads(run("prune", "--all-tenants", "--dry-run", "--json"))
    assert out["test_alpha"]["dry_run"] is True and "jobs" in out["test_alpha"]["counts"]


def test_existing_commands_are_audited(engine, products):
    run("publish", "--tenant", "test_alpha", "--marketplace", "testmkt", "--action", "one",
        "--sku", products[0].sku)  # fmt: skip
    batch_id = MarketplaceJob.objects.get().batch_id
    run("jobs_cancel", "--tenant", "test_alpha", "--batch", str(batch_id))
    assert list(AuditEntry.objects.order_by("id").values_list("action", "door")) == [
        ("batch.start", "command"), ("batch.cancel", "command")]  # fmt: skip
