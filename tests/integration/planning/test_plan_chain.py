"""A plan through the engine, step by step (issue 14): each preset's numbers, the hand-off
between steps, missing history, and a step over its time limit."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings

from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from planning.models import WeeklySales
from planning.params import PRESETS, SAFETY_MULTIPLIERS, plan_parameters
from planning.services import plan_start
from tests.conftest import reset_dispatch_state
from tests.integration.planning.conftest import CATEGORY, demo_history, run_plan

SEASON_START = date(2026, 12, 7)  # the Monday after the demo history's last week
EXPECTED_MULTIPLIER = {"fast-fashion": 1.25, "standard": 1.20, "luxury": 1.6}
STEPS = ["assemble_context", "forecast_demand", "compute_inventory", "push_quantities"]


def outputs(job_id: int) -> dict[str, dict]:
    tasks = MarketplaceTask.objects.filter(job_id=job_id).order_by("step_order")
    return {t.step_type: t.output for t in tasks}


def start(preset: str | None = None, **overrides):
    params = plan_parameters(
        preset=preset, overrides={"category": CATEGORY, "season_start": SEASON_START, **overrides}
    )
    return plan_start(params=params, created_by="test")


@dataclass
class Ran:
    job: MarketplaceJob
    tasks: dict[str, MarketplaceTask]
    runs: list[JobRun]

    @property
    def out(self) -> dict[str, dict]:
        return {name: task.output for name, task in self.tasks.items()}


@pytest.fixture(scope="module")
def plans(django_db_setup, django_db_blocker):
    """Every plan of this module, run once through the engine and committed (its steps read
    the history on the engine's step thread); what the tests check is read here."""
    from tests.conftest import _activate, truncate_tenant_data

    with django_db_blocker.unblock():
        activation = _activate("alpha")
        next(activation)
        try:
            demo_history()
            cases = {f"preset:{p}": start(p) for p in PRESETS}
            cases |= {f"strategy:{s}": start("standard", strategy=s, horizon_weeks=4)
                      for s in SAFETY_MULTIPLIERS}  # fmt: skip
            cases["missing"] = start("standard", category="Surfboards")
            ran = {}
            for name, job in cases.items():
                run_plan(job.pk)
                ran[name] = Ran(
                    MarketplaceJob.objects.get(pk=job.pk),
                    {t.step_type: t for t in MarketplaceTask.objects.filter(job_id=job.pk)
                     .order_by("step_order")},
                    list(JobRun.objects.filter(job_id=job.pk).order_by("attempt")),
                )  # fmt: skip
            sku = sorted(ran["preset:fast-fashion"].out["forecast_demand"]["per_sku"])[0]
            outlet = WeeklySales.objects.filter(sku=sku, store__cluster="outlet")
            ran["history"] = {"sku": sku, "outlet": dict(outlet.values_list("week", "units")),
                              "skus": set(WeeklySales.objects.values_list("sku", flat=True))}  # fmt: skip
            yield ran
        finally:
            schema = connection.schema_name
            truncate_tenant_data(schema)
            reset_dispatch_state([schema])
            next(activation, None)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_runs_the_chain_with_its_numbers(plans, preset):
    ran = plans[f"preset:{preset}"]
    assert ran.job.status == "completed", ran.job.error_message
    out = ran.out
    assert list(out) == STEPS
    horizon = PRESETS[preset]["horizon_weeks"]
    demand, inventory = out["forecast_demand"], out["compute_inventory"]
    # Forecast length = horizon, for the category, each cluster and each SKU.
    assert len(demand["total"]) == len(demand["weeks"]) == horizon
    assert demand["weeks"][0] == SEASON_START.isoformat()
    assert all(len(curve) == horizon for curve in demand["clusters"].values())
    assert set(demand["clusters"]) == {"urban", "suburban", "outlet"}
    assert set(demand["per_sku"]) == plans["history"]["skus"]
    assert len(plans["history"]["skus"]) == 8
    assert all(len(c["total"]) == horizon for c in demand["per_sku"].values())
    # Multiplier per strategy (luxury: its own).
    assert inventory["multiplier"] == EXPECTED_MULTIPLIER[preset]
    assert inventory["strategy"] == PRESETS[preset]["strategy"]
    holdback, pack = PRESETS[preset]["dc_holdback"], PRESETS[preset]["pack_size"]
    # quantities = forecast x multiplier - holdback, in whole packs (rounded up).
    for sku, curves in demand["per_sku"].items():
        units = sum(curves["total"])
        row = inventory["quantities"][sku]
        net = units * inventory["multiplier"] * (1 - holdback)
        assert row["net"] == pytest.approx(net, abs=0.01)
        assert row["holdback"] == pytest.approx(
            units * inventory["multiplier"] * holdback, abs=0.01
        )
        assert row["quantity"] % pack == 0
        assert net - 0.01 <= row["quantity"] < net + pack
        assert sum(row["clusters"].values()) == pytest.approx(row["net"], abs=0.05)
    total = sum(q["quantity"] for q in inventory["quantities"].values())
    assert inventory["total_quantity"] == total > 0
    assert out["push_quantities"] == {
        "plan_id": ran.job.pk, "batch_id": None, "listings": [], "skipped": []
    }  # fmt: skip
    assert all(output["plan_id"] == ran.job.pk for output in out.values())


def test_the_forecast_is_the_same_week_a_year_earlier_scaled_by_the_level(plans):
    """Recomputed from the raw rows, by hand, for one SKU in one cluster."""
    demand = plans["preset:fast-fashion"].out["forecast_demand"]
    sku, by_week = plans["history"]["sku"], plans["history"]["outlet"]
    last = max(by_week)  # 2026-11-23; the season starts two weeks later (one week of gap)

    def units(week: date) -> int:
        return by_week.get(week, 0)

    recent = sum(units(last - timedelta(weeks=i)) for i in range(8))
    year_before = sum(units(last - timedelta(weeks=52 + i)) for i in range(8))
    level = min(max(recent / year_before, 0.5), 2.0)
    expected = [units(SEASON_START - timedelta(weeks=52) + timedelta(weeks=h)) * level
                for h in range(12)]  # fmt: skip
    assert demand["per_sku"][sku]["clusters"]["outlet"] == pytest.approx(expected, abs=0.001)
    assert demand["methods"] == {"seasonal_naive": 24}  # 8 SKUs x 3 clusters


def test_the_inventory_step_receives_the_demand_steps_output(plans):
    tasks = plans["preset:standard"].tasks
    demand_out = tasks["forecast_demand"].output
    # The engine hands every earlier output to the next step as its input.
    assert tasks["compute_inventory"].input["forecast_demand"] == demand_out
    assert tasks["forecast_demand"].input["assemble_context"] == tasks["assemble_context"].output
    assert tasks["compute_inventory"].output["forecast_units"] == pytest.approx(
        sum(demand_out["total"]), abs=0.001
    )
    assert tasks["push_quantities"].input["compute_inventory"] == tasks["compute_inventory"].output


@pytest.mark.parametrize("strategy", sorted(SAFETY_MULTIPLIERS))
def test_each_strategy_has_its_safety_multiplier(plans, strategy):
    ran = plans[f"strategy:{strategy}"]
    assert ran.job.status == "completed", ran.job.error_message
    inventory = ran.out["compute_inventory"]
    assert inventory["multiplier"] == {"none": 1.25, "weekly": 1.20, "bi-weekly": 1.22}[strategy]
    assert len(ran.out["forecast_demand"]["total"]) == 4


def test_a_category_without_history_fails_at_once_naming_it(plans):
    ran = plans["missing"]
    assert ran.job.status == "failed"
    assert "no historical data for category Surfboards" in ran.job.error_message
    (run,) = ran.runs  # permanent: no retry
    assert (run.error_kind, run.failed_step) == ("permanent", "assemble_context")
    assert ran.tasks["assemble_context"].status == "failed"
    assert ran.tasks["forecast_demand"].status == "pending"


def test_a_step_over_its_declared_limit_fails_naming_the_step_and_the_limit(history):
    """The history table is locked by another session, so the context step blocks until its
    0.5-s limit (settings.PLANNING) has passed, whatever the machine's speed."""
    job = start("fast-fashion")
    locked, release = threading.Event(), threading.Event()
    table = f'"{connection.schema_name}"."{WeeklySales._meta.db_table}"'

    def hold_lock():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(60)
        finally:
            connection.close()  # this thread's own connection

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(30)
        with override_settings(PLANNING={"STEP_TIMEOUTS": {"assemble_context": 0.5}}):
            job = run_plan(job.pk, rounds=1)
    finally:
        release.set()
        holder.join(30)

    assert job.status == "retrying"  # a timeout is retryable; the next attempt may succeed
    (run,) = JobRun.objects.filter(job_id=job.pk)
    assert run.error_kind == "timeout" and run.failed_step == "assemble_context"
    assert "'assemble_context' timed out after 0.5s" in run.error_message
    assert "assemble_context" in job.error_message and "0.5s" in job.error_message
