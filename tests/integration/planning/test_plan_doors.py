"""The command and the admin page: the same parameters, the same refusals, nothing queued
on bad input."""

from __future__ import annotations

import io
import json
import threading
from datetime import date

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from orchestration.models import MarketplaceJob
from orchestration.services import run_available_jobs
from tests.integration.planning.conftest import CATEGORY, demo_history


def plan_season(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("plan_season", "--tenant", connection.schema_name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_refuses_bad_parameters_with_every_field_and_queues_nothing(tenant_a):
    with pytest.raises(CommandError) as refused:
        plan_season("--preset", "standard", "--category", CATEGORY, "--horizon-weeks", "100",
                    "--dc-holdback", "2")  # fmt: skip
    message = str(refused.value)
    assert "nothing queued" in message and "horizon_weeks" in message and "dc_holdback" in message
    with pytest.raises(CommandError, match="season_start must be before season_end"):
        plan_season("--preset", "luxury", "--category", CATEGORY,
                    "--season-start", "2027-05-01", "--season-end", "2027-04-01")  # fmt: skip
    with pytest.raises(CommandError, match="unknown tenant"):
        call_command("plan_season", "--tenant", "nope", "--preset", "standard")
    assert MarketplaceJob.objects.count() == 0


def test_the_command_runs_a_plan_here_or_waits_for_the_workers_with_a_progress_bar(history):
    """One test for both (each committed test pays a truncation): --run-here, then --wait."""
    out, _err = plan_season(
        "--preset", "fast-fashion", "--category", CATEGORY, "--run-here", "--json"
    )
    plan = json.loads(out)
    assert plan["status"] == "completed" and plan["params"]["created_by"] == "cli"
    inventory = plan["steps"][2]["output"]
    assert inventory["multiplier"] == 1.25 and len(inventory["quantities"]) == 8

    with pytest.raises(CommandError, match="no historical data for category Hats"):
        plan_season("--preset", "standard", "--category", "Hats", "--run-here")

    stop = threading.Event()
    schema = connection.schema_name

    def worker():  # plays the workers: runs whatever is queued in this tenant
        from django_tenants.utils import schema_context

        try:
            with schema_context(schema):
                while not stop.wait(0.2):
                    run_available_jobs()
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        out, err = plan_season("--preset", "standard", "--category", CATEGORY, "--wait")
    finally:
        stop.set()
        thread.join(30)
    assert out.startswith("plan ") and ": completed" in out.splitlines()[0]
    assert "quantity" in out and "ACM-0003" in out
    assert "compute_inventory" in err or "4/4" in err or "done" in err  # the bar


def test_the_command_gives_up_waiting_and_says_why(tenant_a):
    with pytest.raises(CommandError, match=r"still queued after 0.5 s .*workers running"):
        plan_season("--preset", "standard", "--category", CATEGORY, "--wait", "--timeout", "0.5")


def logged_in_client():
    from django.test import Client

    from tests.factories import UserFactory

    client = Client(HTTP_HOST="alpha.localhost")
    client.force_login(UserFactory(username="planner-admin"))
    return client


@pytest.fixture
def staff_client(history):
    """Committed history (the plan runs on the engine's step thread)."""
    return logged_in_client()


@pytest.fixture
def staff_client_rolled_back(tenant_a):
    """History inside the test's transaction (only this connection reads it)."""
    demo_history()
    return logged_in_client()


def test_the_admin_page_shows_field_errors_and_queues_nothing(staff_client_rolled_back):
    staff_client = staff_client_rolled_back
    page = staff_client.get("/admin/planning/seasonplan/add/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Plan a season" in html and 'value="Jackets"' in html  # categories with history
    assert 'id="plan-presets"' in html and "<script>" not in html  # presets as JSON, no inline JS

    refused = staff_client.post("/admin/planning/seasonplan/add/", {
        "preset": "standard", "category": CATEGORY, "horizon_weeks": "100",
        "season_start": "2027-03-01", "season_end": "2027-02-01",
    })  # fmt: skip
    assert refused.status_code == 200
    errors = refused.context["form"].errors
    assert "less than or equal to 52" in str(errors["horizon_weeks"])
    assert "season_start must be before season_end" in str(errors["season_end"])
    assert MarketplaceJob.objects.count() == 0


def test_the_admin_page_queues_a_plan_and_its_page_shows_the_outputs(staff_client):
    response = staff_client.post("/admin/planning/seasonplan/add/", {
        "preset": "fast-fashion", "category": CATEGORY, "marketplaces": ["ebay"],
    })  # fmt: skip
    job = MarketplaceJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(
        f"/admin/orchestration/marketplacejob/{job.pk}/change/"
    )
    assert job.params["created_by"] == "admin:planner-admin" and job.params["marketplaces"] == [
        "ebay"
    ]
    run_available_jobs()
    page = staff_client.get(response["Location"]).content.decode()
    assert "Forecast demand" in page and "<svg" in page and "<polyline" in page
    assert "ACM-0003" in page and "Quantities" in page
    assert '"series"' not in page  # the context step's history is not dumped into the page
    listing = staff_client.get("/admin/planning/seasonplan/").content.decode()
    assert f"Plan #{job.pk}" in listing


def test_import_history_is_all_or_nothing_and_names_the_bad_line(tenant_a, tmp_path):
    from planning.models import Store, WeeklySales

    stores = tmp_path / "stores.csv"
    stores.write_text(
        "code,name,cluster,region,size_sqm\nS1,One,urban,Berlin,100\nS2,Two,outlet,,\n"
    )
    sales = tmp_path / "sales.csv"
    sales.write_text(
        "week,store,sku,category,units\n2026-11-18,S1,A-1,Hats,3\n2026-11-23,S2,A-1,Hats,-1\n"
    )
    args = ("import_history", "--tenant", connection.schema_name, "--stores", str(stores))
    with pytest.raises(CommandError, match="nothing imported: line 3: units must not be negative"):
        call_command(*args, "--sales", str(sales))
    assert Store.objects.count() == 0 and WeeklySales.objects.count() == 0
    with pytest.raises(CommandError, match="no such file"):
        call_command(*args, "--sales", str(tmp_path / "missing.csv"))

    sales.write_text(
        "week,store,sku,category,units\n2026-11-18,S1,A-1,Hats,3\n2026-11-23,S2,A-1,Hats,4\n"
    )
    out = io.StringIO()
    call_command(*args, "--sales", str(sales), "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"stores": 2, "sales": 2}
    # Weeks are stored as their Monday; a second import updates instead of duplicating.
    assert sorted(WeeklySales.objects.values_list("week", flat=True)) == [
        date(2026, 11, 16), date(2026, 11, 23),
    ]  # fmt: skip
    call_command(*args, "--sales", str(sales), stdout=io.StringIO())
    assert WeeklySales.objects.count() == 2
