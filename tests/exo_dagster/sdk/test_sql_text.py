"""Templated values in SQL are literals: no payload changes what a query does."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from exo_dagster.sdk import sql_text, templates
from exo_dagster.sdk.table import StoredTable

PAYLOADS = [
    "x' union all select 42, 'INJECTED' --",
    "x'; copy (select 'owned') to '/tmp/exo-owned.csv'; select '",
    "x''; drop table t; --",
    "' or '1'='1",
    "\\'; select 1; --",
    'x" , 42 as "y',
    "*/ select 1 /*",
    "x\nselect 1",
    "x $$ ; select 1; $$",
    "1; select 2",
    "1 or 1=1",
    "ｘ’ union select 1 --",  # fullwidth / typographic quote lookalikes
    "x\x00y",
    "-- comment",
    "",
]

# (query template, how to read the value back from the single result row)
CONTEXTS = [
    "select '${{ env.V }}' as v",
    "select 'pre ${{ env.V }} post' as v",
    "select ${{ env.V }} as v",
    'select 1 as "${{ env.V }}"',
    "select 1 as v -- ${{ env.V }}\n",
    "select 1 as v /* ${{ env.V }} */",
]


def _render(query: str, value) -> str:
    return sql_text.render(query, lambda ref: value)


_CON = duckdb.connect()  # one for all attempts: a connection costs more than the queries


def _run(query: str, value):
    con = _CON
    text = _render(query, value)
    assert len(con.extract_statements(text)) == 1, text
    return con.sql(text)


def _changed(query: str, value) -> bool:
    """Whether the value did anything but stand for itself: another statement, another row, another column."""
    try:
        rel = _run(query, value)
        rows = rel.fetchall()
    except AssertionError:
        return True
    except duckdb.Error:
        # refused with no query run: only a NUL byte (DuckDB strings cannot hold one) or an empty identifier
        return not ("\x00" in value or (value == "" and '"${{' in query))
    if len(rows) != 1 or len(rel.columns) != 1:
        return True
    expect_text = value.replace("\n", " ") if "--" in query else value
    if '"${{' in query:
        return rel.columns[0] != value and value != ""
    if "--" in query or "/*" in query:
        return rows[0][0] != 1
    return rows[0][0] != (value if "pre" not in query else f"pre {expect_text} post")


def test_no_payload_changes_a_query_in_any_context():
    attempts = [(q, p) for q in CONTEXTS for p in PAYLOADS]
    changed = [(q, p) for q, p in attempts if _changed(q, p)]
    assert len(attempts) == 90
    assert changed == []


def test_typed_literals():
    con = duckdb.connect()
    assert con.sql(_render("select ${{ env.V }} as v", 42)).fetchall() == [(42,)]
    assert con.sql(_render("select ${{ env.V }} as v", 2.5)).fetchall() == [(2.5,)]
    assert con.sql(_render("select ${{ env.V }} as v", True)).fetchall() == [(True,)]
    assert con.sql(_render("select ${{ env.V }} as v", None)).fetchall() == [(None,)]
    assert con.sql(_render("select ${{ env.V }} as v", dt.date(2024, 1, 2))).fetchall() == [(dt.date(2024, 1, 2),)]
    # a column (list) is a list of literals, for `in (...)`; the payload is one value among them
    rows = con.sql(
        _render(
            "select x from (values ('a'), ('b'), ('INJECTED')) t(x) where x in (${{ env.V }}) order by x",
            ["a", "b' ) or (1=1", "c"],
        )
    ).fetchall()
    assert rows == [("a",)]
    # a whole table is its view name, quoted
    assert _render("select * from ${{ env.V }}", StoredTable("/x.parquet", name='we"ird')) == 'select * from "we""ird"'


def test_dollar_quoted_strings_refuse_values():
    with pytest.raises(sql_text.SqlTemplateError, match="\\$-quoted"):
        _render("select $$ ${{ env.V }} $$", "x")
    # E'...' strings process backslash escapes: no value is placed there (it was once, and ended the string early)
    for payload in PAYLOADS:
        with pytest.raises(sql_text.SqlTemplateError, match="E'...'"):
            _render("select E'${{ env.V }}' as v", payload)
    # `$1` is a parameter, not a dollar-quote: the value after it is still a literal
    assert _render("select $1, ${{ env.V }}", "a'b") == "select $1, 'a''b'"


def test_text_without_templates_is_untouched():
    assert sql_text.render("select 'a''b' -- x", lambda r: 1) == "select 'a''b' -- x"
    assert templates.has_template(CONTEXTS[0])
