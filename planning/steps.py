"""The plan job's steps: a step provider on the engine (``marketplace="planning"``, action
``plan``), registered by ``PlanningConfig.ready``. Each step's output is stored on its task
and handed to the next (``ctx.output_of``):

assemble_context → forecast_demand → compute_inventory → push_quantities

Time limits come from each step's declaration (``timeout``; ``settings.PLANNING
["STEP_TIMEOUTS"]`` may override one); the engine's executor fails a step that runs past it
with an error naming the step and the limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from django.conf import settings

from orchestration.steps import PermanentStepError, ResourceLimit, Step, StepContext
from planning import forecast, live, selectors
from planning.params import PlanParameters
from planning.services import plan_push, plan_push_output

MARKETPLACE = selectors.MARKETPLACE
ACTION = selectors.ACTION


def plan_params(ctx: StepContext) -> PlanParameters:
    """The job's stored parameters, validated again (a job made by hand gets a clear error)."""
    fields = PlanParameters.model_fields
    try:
        return PlanParameters.model_validate({k: v for k, v in ctx.params.items() if k in fields})
    except ValueError as exc:
        raise PermanentStepError(f"invalid plan parameters: {exc}") from None


class PlanStep:
    """Base of the plan's steps: no external effect to look for (``check`` → None) except
    the push, and the messages every step sends."""

    step_type: str = ""
    default_timeout: float = 30.0

    @property
    def timeout(self) -> float:
        overrides = getattr(settings, "PLANNING", {}).get("STEP_TIMEOUTS", {})
        return float(overrides.get(self.step_type, self.default_timeout))

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        live.send(ctx, "agent_status", message=f"{self.step_type} started")
        output, summary = self.run(ctx)
        live.send(ctx, "complete", summary=summary)
        # An id first: the job page names a step's output by its ids (the plan's outputs are
        # drawn below the steps, not dumped into the table).
        return {"plan_id": ctx.job_id, **output}

    def run(self, ctx: StepContext) -> tuple[dict[str, Any], dict[str, Any]]:
        """(output, summary) of the step's work: each of the four plan steps defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def __repr__(self) -> str:
        return f"<planning.{self.step_type} step>"


class AssembleContext(PlanStep):
    """The category's weekly history per SKU and store cluster, and the parameters."""

    step_type = "assemble_context"

    def run(self, ctx: StepContext) -> tuple[dict[str, Any], dict[str, Any]]:
        params = plan_params(ctx)
        history = selectors.category_history(params.category, before=params.season_start)
        if not history["weeks"]:
            raise PermanentStepError(
                f"no historical data for category {params.category}",
                detail={"category": params.category},
            )
        live.StepProgress(ctx, 1, label="history").advance()
        output = {"category": params.category, "params": params.as_job_params(), **history}
        summary = {"skus": len(history["series"]), "weeks": len(history["weeks"]),
                   "clusters": sorted(history["clusters"])}  # fmt: skip
        return output, summary


def _add(into: list[float], values: Sequence[float]) -> None:
    for i, value in enumerate(values):
        into[i] += value


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 3) for v in values]


class ForecastDemand(PlanStep):
    """A weekly forecast per SKU for the horizon: per cluster, the SKU's total, and the
    category's total and per-cluster curves (planning.forecast)."""

    step_type = "forecast_demand"
    default_timeout = 60.0

    def run(self, ctx: StepContext) -> tuple[dict[str, Any], dict[str, Any]]:
        context = ctx.output_of("assemble_context")
        params = context["params"]
        horizon = int(params["horizon_weeks"])
        start = date.fromisoformat(params["season_start"])
        start -= timedelta(days=start.weekday())
        # History ends before the season; the weeks between them are forecast too and skipped.
        last = date.fromisoformat(context["weeks"][-1])
        gap = max(0, (start - last).days // 7 - 1)
        total = [0.0] * horizon
        clusters: dict[str, list[float]] = {c: [0.0] * horizon for c in context["clusters"]}
        per_sku: dict[str, Any] = {}
        methods: dict[str, int] = {}
        progress = live.StepProgress(ctx, len(context["series"]), label="products")
        for sku, by_cluster in context["series"].items():
            ctx.raise_if_cancelled()
            ctx.raise_if_timed_out()
            sku_total = [0.0] * horizon
            sku_clusters = {}
            for cluster, history in by_cluster.items():
                method, curve = forecast.forecast_series(history, gap + horizon)
                curve = curve[gap:]
                methods[method] = methods.get(method, 0) + 1
                sku_clusters[cluster] = _rounded(curve)
                _add(sku_total, curve)
                _add(clusters.setdefault(cluster, [0.0] * horizon), curve)
            _add(total, sku_total)
            per_sku[sku] = {"total": _rounded(sku_total), "clusters": sku_clusters}
            progress.advance()
        output = {
            "category": context["category"],
            "horizon_weeks": horizon,
            "weeks": [(start + timedelta(weeks=i)).isoformat() for i in range(horizon)],
            "methods": methods,
            "total": _rounded(total),
            "clusters": {c: _rounded(v) for c, v in clusters.items()},
            "per_sku": per_sku,
        }
        return output, {"skus": len(per_sku), "horizon_weeks": horizon,
                        "units": round(sum(total), 1), "methods": methods}  # fmt: skip


class ComputeInventory(PlanStep):
    """Quantities per SKU: forecast over the horizon x the strategy's safety multiplier,
    minus the DC holdback, rounded up to whole packs."""

    step_type = "compute_inventory"

    def run(self, ctx: StepContext) -> tuple[dict[str, Any], dict[str, Any]]:
        demand = ctx.output_of("forecast_demand")
        params = ctx.output_of("assemble_context")["params"]
        multiplier = float(params["multiplier"])
        holdback = float(params["dc_holdback"])
        pack = int(params["pack_size"])
        quantities = {}
        for sku, curves in demand["per_sku"].items():
            row = forecast.quantity_for(sum(curves["total"]), multiplier=multiplier,
                                        dc_holdback=holdback, pack_size=pack)  # fmt: skip
            clusters = curves["clusters"]
            whole = sum(sum(c) for c in clusters.values()) or 1.0
            row["clusters"] = {
                c: round(row["net"] * sum(v) / whole, 3) for c, v in clusters.items()
            }
            quantities[sku] = row
        output = {
            "category": demand["category"],
            "strategy": params["strategy"],
            "multiplier": multiplier,
            "dc_holdback": holdback,
            "pack_size": pack,
            "forecast_units": round(sum(demand["total"]), 3),  # what it received from demand
            "quantities": quantities,
            "total_quantity": sum(int(q["quantity"]) for q in quantities.values()),
        }
        return output, {"skus": len(quantities), "total_quantity": output["total_quantity"],
                        "multiplier": multiplier}  # fmt: skip


class PushQuantities(PlanStep):
    """A child batch of ``update_quantity`` jobs, one per listing that exists, made once per
    plan job (``PlanPush``): a retried push finds its batch and creates nothing again; each
    job's own check finds a quantity that is already right on the marketplace."""

    step_type = "push_quantities"
    default_timeout = 60.0

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        live.send(ctx, "agent_status", message=f"{self.step_type} started")
        found = plan_push_output(plan_job_id=ctx.job_id)
        if found is not None:
            live.send(ctx, "complete", summary={"batch_id": found["batch_id"], "reused": True})
        return found

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        output, summary = self.run(ctx)  # ``check`` announced the start
        live.send(ctx, "complete", summary=summary)
        return output

    def run(self, ctx: StepContext) -> tuple[dict[str, Any], dict[str, Any]]:
        inventory = ctx.output_of("compute_inventory")
        params = ctx.output_of("assemble_context")["params"]
        quantities = {sku: int(q["quantity"]) for sku, q in inventory["quantities"].items()}
        output = plan_push(
            plan_job_id=ctx.job_id,
            quantities=quantities,
            marketplaces=list(params.get("marketplaces") or []),
            on_progress=live.StepProgress(ctx, 1, label="listings").advance,
        )
        return output, {"batch_id": output["batch_id"], "jobs": len(output["listings"]),
                        "skipped": len(output["skipped"])}  # fmt: skip


STEPS: tuple[Step, ...] = (
    AssembleContext(),
    ForecastDemand(),
    ComputeInventory(),
    PushQuantities(),
)  # type: ignore[assignment]


class PlanningProvider:
    """The plan job's provider: its own resource (plans don't hold a marketplace while they
    compute), and one running plan per category (two would push over each other)."""

    marketplace = MARKETPLACE
    resource = ResourceLimit(key="planning", concurrency=4)

    def actions(self) -> Sequence[str]:
        return [ACTION]

    def steps(self, action: str) -> Sequence[Step]:
        if action != ACTION:
            raise KeyError(action)
        return STEPS

    def concurrency_key(self, *, product_id: int | None, sku: str, params: Mapping) -> str:
        return f"planning:{params.get('category', '')}"


PROVIDER = PlanningProvider()
