"""A step runs in its job's tenant on the helper thread's own connection, which keeps its
search path from one step of that tenant to the next (no ``SET search_path`` per step)."""

from __future__ import annotations

import pytest
from django.db import connection

from orchestration.engine.executor import StepExecutor
from orchestration.steps import StepContext
from tests.conftest import _ensure_tenant


class _Where:
    """Reports the step's schema and whether the path was already set before its query."""

    def check(self, ctx):
        return None

    def perform(self, ctx):
        already_set = connection.search_path_set_schemas is not None
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            (schema,) = cursor.fetchone()
        return {"schema": schema, "path_already_set": already_set}


def _ctx(schema: str) -> StepContext:
    return StepContext(schema_name=schema, job_id=1, marketplace="m", action="a",
                       product_id=None, params={}, step_type="s", step_order=1, attempt=1,
                       timeout=30, outputs={})  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_steps_keep_their_tenants_path_and_switch_tenants():
    _ensure_tenant("alpha")
    _ensure_tenant("beta")
    executor = StepExecutor()
    try:
        seen = [
            executor.run(_Where(), _ctx(schema), on_tick=lambda: None)[0]
            for schema in ("test_alpha", "test_alpha", "test_beta", "test_alpha")
        ]
    finally:
        executor.close()
    assert [s["schema"] for s in seen] == ["test_alpha", "test_alpha", "test_beta", "test_alpha"]
    # The second step of a tenant in a row finds its path set; a switch sets it again.
    assert [s["path_already_set"] for s in seen] == [False, True, False, False]
