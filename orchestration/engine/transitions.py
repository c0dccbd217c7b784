"""The guarded write every status change goes through.

``UPDATE … SET status = target WHERE id = … AND status IN (allowed sources)``: the
transition table decides the sources, the database decides the race. No row
matched → ``ForbiddenTransition`` and nothing was written (procrastinate's idiom).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from orchestration import states
from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask

_KINDS: dict[type[models.Model], str] = {
    MarketplaceJob: "job",
    MarketplaceTask: "task",
    JobRun: "run",
    Batch: "batch",
}


# The order rows are locked in (the same for every caller: no deadlock between two bulk
# moves). Tasks are always moved by job: in their (job, step) index's order the lock reads
# only those jobs' entries, where "ORDER BY id" let a planner with small-table statistics walk
# the whole primary key and filter on the job (test_statement_costs).
_LOCK_ORDER: dict[type[models.Model], tuple[str, ...]] = {
    MarketplaceTask: ("job_id", "step_order"),
}


def _sources(model: type[models.Model], target: str, expect: Iterable[str] | None) -> set[str]:
    allowed = set(states.sources(_KINDS[model], target))
    if expect is not None:
        allowed &= {str(s) for s in expect}
    return allowed


def transition(
    model: type[models.Model],
    pk: int,
    target: str,
    *,
    expect: Iterable[str] | None = None,
    **fields: Any,
) -> str:
    """Move one row to ``target``; returns the status it left. Raises if not allowed."""
    sources = _sources(model, target, expect)
    # No ORDER BY (``first()`` would add the model's ordering): with statistics taken while the
    # table was small, "id = %s ORDER BY job_id, step_order LIMIT 1" walked the whole
    # (job, step) index of the task table to filter on the id (test_statement_costs).
    found = list(
        model._default_manager.select_for_update()
        .filter(pk=pk)
        .order_by()
        .values_list("status", flat=True)
    )
    row = found[0] if found else None
    if row is None or row not in sources:
        raise states.ForbiddenTransition(_KINDS[model], pk, str(row), target)
    model._default_manager.filter(pk=pk).update(status=target, **fields)
    return row


def transition_many(
    queryset: models.QuerySet,
    target: str,
    *,
    expect: Iterable[str] | None = None,
    **fields: Any,
) -> list[tuple[int, str]]:
    """Move every row of ``queryset`` that may go to ``target``; returns (pk, old status).

    Rows whose status does not allow it are left alone (bulk cancel skips finished jobs).
    """
    sources = _sources(queryset.model, target, expect)
    locked = list(
        queryset.filter(status__in=sources)
        .select_for_update(of=("self",))
        .order_by(*_LOCK_ORDER.get(queryset.model, ("pk",)))
        .values_list("pk", "status")
    )
    if locked:
        queryset.model._default_manager.filter(pk__in=[pk for pk, _ in locked]).update(
            status=target, **fields
        )
    return locked
