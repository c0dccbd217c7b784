"""The operator's probes: ``workers_health`` (exit code, text, JSON, ``--local``) and
``recover_runs`` (the sweep, now)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration.engine.advance import task_start
from orchestration.engine.claims import claim_jobs
from orchestration.models import JobRun
from orchestration.services import job_create
from tenants.models import WorkerCluster
from tests.engine_providers import MARKETPLACE


def _health(capsys, *args) -> tuple[int, str, str]:
    connection.set_schema_to_public()
    with pytest.raises(SystemExit) as exited:
        call_command("workers_health", *args)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_no_cluster_is_unhealthy(tenant_a, capsys):
    code, out, _err = _health(capsys, "--json")
    assert code == 1 and json.loads(out)["ok"] is False


def test_a_working_cluster_is_healthy_and_a_stalled_one_is_not(tenant_a, capsys):
    connection.set_schema_to_public()
    host = socket.gethostname()
    WorkerCluster.objects.create(name=f"{host}:1", host=host, watchdog_pid=1, workers=2,
                                 state="running", last_progress_at=timezone.now())  # fmt: skip
    code, out, err = _health(capsys)
    assert code == 0 and f"{host}:1" in out and "ok" in out and not err
    code, out, _ = _health(capsys, "--local", "--json")
    assert code == 0 and [c["name"] for c in json.loads(out)["clusters"]] == [f"{host}:1"]

    WorkerCluster.objects.filter(name=f"{host}:1").update(state="stalled", reason="blocked")
    code, out, err = _health(capsys)
    assert code == 1 and "stalled" in out and "problem:" in err and "blocked" in err
    code, out, _ = _health(capsys, "--local", "--json")
    assert code == 1 and json.loads(out)["problems"]


def test_local_ignores_other_hosts_clusters(tenant_a, capsys):
    connection.set_schema_to_public()
    WorkerCluster.objects.create(name="elsewhere:1", host="elsewhere", watchdog_pid=1,
                                 state="running")  # fmt: skip
    code, out, _ = _health(capsys, "--local", "--json")
    assert code == 1 and "no cluster runs on" in json.loads(out)["problems"][0]
    assert _health(capsys)[0] == 0  # the fleet as a whole is fine


def test_recover_runs_fails_an_expired_lease_now(engine, capsys):
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    (claim,) = claim_jobs(limit=1, worker="gone-host:1")
    task_start(claim, job.tasks.get(step_order=1), {}, first_write=True)
    JobRun.objects.filter(pk=claim.run_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    call_command("recover_runs", "--json")
    assert json.loads(capsys.readouterr().out)["recovered"] == {"test_alpha": 1}
    with schema_context("test_alpha"):  # the sweep visits every tenant and ends in public
        assert JobRun.objects.get(pk=claim.run_id).error_kind == "worker_lost"
    call_command("recover_runs")
    assert "recovered 0 lost run(s)" in capsys.readouterr().out


def test_run_tenant_jobs_runs_that_tenants_jobs_in_its_schema(engine):
    from orchestration import tasks
    from orchestration.models import MarketplaceJob

    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    connection.set_schema_to_public()  # a worker starts anywhere; the task names its tenant
    assert tasks.run_tenant_jobs("test_alpha") == 1
    with schema_context("test_alpha"):
        assert MarketplaceJob.objects.get(pk=job.pk).status == "completed"
