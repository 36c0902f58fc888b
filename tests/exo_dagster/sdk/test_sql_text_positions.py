"""Where a template stands is DuckDB's own reading of the query: the cases exo's old lexer got wrong, refusals."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from exo_dagster.sdk import sql_text, templates
from exo_dagster.sdk.table import StoredTable

INJECT = "1 as b, 42 as injected --"


def _render(query: str, value) -> str:
    return sql_text.render(query, lambda ref: value)


def _rows(query: str, value) -> tuple[list[str], list[tuple]]:
    rel = duckdb.connect().sql(_render(query, value))
    return rel.columns, rel.fetchall()


def test_a_negative_number_after_minus_is_a_number_not_a_comment():
    assert _render("select 10-${{ inputs.n }} as v", -1) == "select 10-(-1) as v"
    assert _rows("select 10-${{ inputs.n }} as v", -1) == (["v"], [(11,)])
    # `10--1` would have made the rest of the line a comment, and the WHERE condition with it
    where = "select count(*) as n from range(5) t(x) where x >= 10-${{ inputs.n }} and false"
    assert _rows(where, -1) == (["n"], [(0,)])
    assert _rows("select 2 * ${{ inputs.x }} as v", -2.5)[1] == [(-5.0,)]
    assert _rows("select 1 + ${{ inputs.x }} as v", -0.0)[1] == [(1,)]


@pytest.mark.parametrize(
    "query",
    [
        # DuckDB reads `$€$...$€$` as a dollar-quoted string: the quote inside it opens nothing
        "select $€$it's$€$ as a, ${{ inputs.v }} as b",
        # `a$b$c` is one name to DuckDB, not the start of a `$b$` string
        "select 'x' as a$b$c, 'y$b$' as z, ${{ inputs.v }} as b",
        'select 1 as "it\'s", ${{ inputs.v }} as b',
        "select /* it's */ 1 as a, ${{ inputs.v }} as b",
        "select 1 as a -- it's\n, ${{ inputs.v }} as b",
    ],
)
def test_code_after_text_that_looks_like_an_open_quote_is_still_code(query):
    columns, rows = _rows(query, INJECT)
    assert columns[-1] == "b" and "injected" not in columns
    assert rows[0][-1] == INJECT


def test_a_value_in_a_string_after_dollar_quotes_and_dollar_names():
    columns, rows = _rows("select $€$ x $€$ as a, 'v: ${{ inputs.v }}' as b, c$ from (select 3 as c$)", "it's")
    assert columns == ["a", "b", "c$"] and rows == [(" x ", "v: it's", 3)]


@pytest.mark.parametrize(
    "query, why",
    [
        ("select E'${{ inputs.v }}' as v", "E'...'"),
        ("select e'a\\n${{ inputs.v }}' as v", "e'...'"),
        ("select X'${{ inputs.v }}' as v", "X'...'"),
        ("select $$ ${{ inputs.v }} $$ as v", "\\$-quoted"),
        ("select $€$ ${{ inputs.v }} $€$ as v", "\\$-quoted"),
        ("select x${{ inputs.v }} as v", "glued"),
        ("select ${{ inputs.v }}${{ inputs.w }} as v", "glued"),
        ("select count ${{ inputs.v }}", "follows `count`"),
        ("select 1 as v order by ${{ inputs.v }}", "follows `by`"),
        ("select 1::${{ inputs.v }}", "follows `::`"),
        ("select t.${{ inputs.v }} from (select 1 as a) t", "follows `.`"),
        ("select ${{ inputs.v }}(1)", "followed by `\\(`"),
    ],
)
def test_where_no_value_can_stand_every_value_is_refused(query, why):
    for value in ["a\\' , 42 as x --", -1, 7, None, [1, 2], dt.date(2024, 1, 1)]:
        with pytest.raises(sql_text.SqlTemplateError, match=why) as info:
            _render(query, value)
        assert "${{ inputs." in str(info.value) and "__exo_value" not in str(info.value)


def test_refusals_are_found_without_values_and_name_the_template_offset():
    query = "select 1 as a,\n  E'${{ inputs.v }}' as b, ${{ inputs.w }} as c, x${{ inputs.y }} as d"
    problems = sql_text.check(query)
    assert [query[p.offset : p.offset + 15] for p in problems] == ["${{ inputs.v }}", "${{ inputs.y }}"]
    assert all(p.hint for p in problems)
    assert sql_text.check("select ${{ inputs.v }} as v, '${{ inputs.w }}' as w") == []
    assert sql_text.check("select 1") == [] and sql_text.check("select ${{ nope }}") == []
    # a per-row value would be pasted row by row: refused wherever it stands
    [problem] = sql_text.check("select '$${{ satellites.a.output.c }}' as v")
    assert "per-row" in problem.problem and problem.offset == 8


def test_lists_are_elements_in_an_in_list_and_one_list_value_elsewhere():
    assert _render("select 2 in (${{ inputs.ids }})", [1, -2, "a'b"]) == "select 2 in (1, (-2), 'a''b')"
    assert _render("select 2 not in (0, ${{ inputs.ids }}, 9)", [1, 2]) == "select 2 not in (0, 1, 2, 9)"
    assert _render("select 2 in (${{ inputs.ids }})", []) == "select 2 in (NULL)"
    # elsewhere a list is one LIST value: its length cannot add columns or arguments
    columns, rows = _rows("select ${{ inputs.ids }} as v", [1, 2, 3])
    assert columns == ["v"] and rows == [([1, 2, 3],)]
    assert _rows("select coalesce(${{ inputs.ids }}) as v", ["a", "b"]) == (["v"], [(["a", "b"],)])


def test_typed_values_are_complete_units():
    assert _rows("select ${{ inputs.v }}::VARCHAR as v", -1)[1] == [("-1",)]
    assert _rows("select - ${{ inputs.v }} as v", float("inf"))[1] == [(float("-inf"),)]
    assert _rows("select ${{ inputs.v }} as v", dt.datetime(2024, 1, 2, 3, 4))[1] == [(dt.datetime(2024, 1, 2, 3, 4),)]
    assert _rows("select ${{ inputs.v }} as v", b"\x00'")[1] == [(b"\x00'",)]
    assert _rows("select interval ${{ inputs.v }} day as v", -3)[1] == [(dt.timedelta(days=-3),)]
    table = StoredTable("/a'b.parquet")
    assert _render("select * from ${{ inputs.t }}", table) == "select * from read_parquet('/a''b.parquet')"
    assert _render("select 1 as v -- ${{ inputs.v }}", "x\nselect 2") == "select 1 as v -- "


def test_the_final_check_refuses_a_placement_that_would_change_the_tokens():
    """The last line of defence: were a literal ever wrong, render refuses instead of running a changed query."""
    query = "select ${{ inputs.v }} as v"
    skeleton, marks, tokens, slots, _problems = sql_text._plan(query)
    assert sql_text._verified(skeleton, tokens, slots, ["(-1)"], marks) == "select (-1) as v"
    for wrong in ["1 as w, 2", "1 -- x", "'a' 'b'", "x'00'", "-1::int"]:
        with pytest.raises(sql_text.SqlTemplateError, match="would change how DuckDB reads the query"):
            sql_text._verified(skeleton, tokens, slots, [wrong], marks)
    skeleton, marks, tokens, slots, _problems = sql_text._plan("select '${{ inputs.v }}' as v")
    with pytest.raises(sql_text.SqlTemplateError, match="inputs.v"):
        sql_text._verified(skeleton, tokens, slots, ["x' as v, '"], marks)


def test_text_that_is_not_valid_unicode_is_refused():
    with pytest.raises(sql_text.SqlTemplateError, match="not valid text"):
        _render("select '${{ inputs.v }}' as v", "a\ud800b")


def test_a_template_syntax_error_is_still_a_template_error():
    with pytest.raises(templates.TemplateSyntaxError):
        _render("select ${{ inputs.v ", 1)
