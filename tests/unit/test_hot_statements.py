"""The runner's per-step and per-job statements are sent with ``$n`` placeholders.

psycopg parses a statement's ``%(name)s`` placeholders once and caches the result only for
statements up to ``MAX_CACHED_STATEMENT_LENGTH`` bytes; a longer one is parsed again at
every execution. The job's end statement, with the next job's start in it, is longer than
that (issue 17: the parse was ~5% of a worker's Python in a py-spy profile), so the hot
statements are converted once (``advance.positional``) and run through a raw cursor.
"""

from __future__ import annotations

import pytest

from orchestration.engine import advance, finish
from orchestration.engine.advance import compact_sql, positional


def _hot_statements() -> dict[str, str]:
    return {
        "start": advance._sql(advance._START_SQL),
        "advance": advance._sql(advance._ADVANCE_SQL),
        "advance+renew": advance._sql(advance._ADVANCE_RENEW_SQL),
        "finish": finish._finish_sql(),
        "finish+next start": finish._finish_sql(True),
    }


@pytest.mark.parametrize("name", list(_hot_statements()))
def test_each_hot_statement_converts_to_numbered_parameters(name):
    sql = _hot_statements()[name]
    text, names = positional(sql)
    assert b"%" not in text
    assert len(names) == len(set(names)) > 0
    # Every number stands for its name: converting back gives the statement again.
    back = text.decode()
    for number in range(len(names), 0, -1):  # $12 before $1
        back = back.replace(f"${number}", f"%({names[number - 1]})s")
    assert back == sql
    assert "\n" not in sql and "  " not in sql


def test_the_job_end_with_the_next_start_is_longer_than_psycopgs_parse_cache():
    # What makes the conversion worth having: psycopg would parse this one at every job's end.
    from psycopg import _queries

    assert len(finish._finish_sql(True).encode()) > _queries.MAX_CACHED_STATEMENT_LENGTH


def test_positional_numbers_each_name_once_and_refuses_a_stray_percent():
    assert positional("SELECT %(a)s, %(b)s, %(a)s") == (b"SELECT $1, $2, $1", ("a", "b"))
    with pytest.raises(ValueError, match="placeholder"):
        positional("SELECT %(a)s WHERE x LIKE 'a%'")


def test_compact_sql_keeps_literals_and_refuses_comments():
    assert compact_sql("SELECT  'a b'\n  FROM t") == "SELECT 'a b' FROM t"
    with pytest.raises(ValueError, match="comment"):
        compact_sql("SELECT 1 -- the rest\nFROM t")
    with pytest.raises(ValueError, match="literal"):
        compact_sql("SELECT 'two  spaces'")
