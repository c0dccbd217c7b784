"""A paginator that never counts millions of rows (PITFALLS: "Admin at scale").

Unfiltered: the planner's row estimate for the tenant's table (``pg_class.reltuples``
through ``to_regclass``, which follows the search_path, so it is this tenant's copy),
or an exact count while the table is small or never analysed. Filtered: an exact
count of at most ``EXACT_UP_TO`` rows, and the planner's estimate for the filter
beyond that. The admin shows such counts as approximate.
"""

from __future__ import annotations

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

EXACT_UP_TO = 10_000


def table_estimate(queryset: QuerySet) -> int:
    """``reltuples`` of the model's table in the current schema; -1 if never analysed."""
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [queryset.model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else -1


def plan_estimate(queryset: QuerySet) -> int:
    """The planner's row estimate for a filtered queryset."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    #: True when ``count`` is an estimate (the templates say "about").
    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        if not queryset.query.where:
            estimate = table_estimate(queryset)
            if estimate > EXACT_UP_TO:
                self.estimated = True
                return estimate
            return queryset.count()
        capped = queryset.order_by()[: EXACT_UP_TO + 1].count()
        if capped <= EXACT_UP_TO:
            return capped
        self.estimated = True
        return max(EXACT_UP_TO + 1, plan_estimate(queryset))
