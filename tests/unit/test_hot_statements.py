"""The runner's per-step and per-job statements stay within what psycopg caches.

psycopg parses a statement's placeholders once and caches the result only for statements
up to ``MAX_CACHED_STATEMENT_LENGTH`` bytes; a longer one is parsed again at every
execution. The job's end statement (with its webhook outbox CTEs) was 4,575 bytes and cost
a regex pass over its text at each job's end (issue 17, seen in a py-spy profile).
"""

from __future__ import annotations

import pytest
from psycopg import _queries

from orchestration.engine import advance, finish
from orchestration.engine.advance import compact_sql


def _hot_statements() -> dict[str, str]:
    return {
        "start": advance._sql(advance._START_SQL),
        "advance": advance._sql(advance._ADVANCE_SQL),
        "advance+renew": advance._sql(advance._ADVANCE_RENEW_SQL),
        "finish": finish._finish_sql(),
    }


@pytest.mark.parametrize("name", ["start", "advance", "advance+renew", "finish"])
def test_each_hot_statement_fits_psycopgs_parse_cache(name):
    sql = _hot_statements()[name]
    assert len(sql.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert "\n" not in sql and "  " not in sql


def test_compact_sql_keeps_literals_and_refuses_comments():
    assert compact_sql("SELECT  'a b'\n  FROM t") == "SELECT 'a b' FROM t"
    with pytest.raises(ValueError, match="comment"):
        compact_sql("SELECT 1 -- the rest\nFROM t")
    with pytest.raises(ValueError, match="literal"):
        compact_sql("SELECT 'two  spaces'")
