"""Fuzz: no generated value changes how DuckDB's own parser reads a templated query.

Each value is rendered at each position; every rendering that is not refused is parsed by DuckDB
(`json_serialize_sql`) and must give the same statement as a harmless value of the same kind (constants'
text and source offsets aside). Some positions must refuse every value; some must return the value itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import random
import re

import duckdb
import pytest

from exo_dagster.sdk import sql_text
from exo_dagster.sdk.table import StoredTable

V = "${{ inputs.v }}"
SEED = 20261207
VALUES_PER_KIND = 50

# positions where every value is placed (no refusal); `name`: the value is a column name, so aliases are masked
PLACED = [
    f"select {V} as v",
    f"select 10-{V} as v",
    f"select 10+{V} as v",
    f"select 2*{V} as v",
    f"select - {V} as v",
    f"select 1 as v where 1 = {V} or true",
    f"select {V}::VARCHAR as v",
    f"select [{V}] as v",
    f"select case when true then {V} else null end as v, 2 as w",
    f"select x from (values (1), (2)) t(x) where x in ({V})",
    f"select x from (values (1), (2)) t(x) where x not in (0, {V}, 3)",
    f"select {{'k': {V}}} as v",
    f"select 1 as v limit {V}",
    f"select '{V}' as v",
    f"select 'a {V} b' as v, 2 as w",
    f"select 'a''{V}''' as v",
    f"select 1 as v, 'a'\n'{V}' as w",
    f"select 1 as a$b, '{V}' as v, 2 as c$",
    f"select 1 as v -- {V}\n, 2 as w",
    f"select 1 as v -- {V}",
    f"select 1 as v /* {V} */, 2 as w",
    f"select 1 as v /* a /* {V} */ b */, 2 as w",
    f"select 10--{V}\n as v",
    f"select 1 as v, {V} as w from (select 1) t where 1 = 1",
    f"select 1 as v where 2 between {V} and 3 or true",
    f"select 'a' like {V} as v",
    f"select distinct {V} as v",
    f"select 1 as v offset {V}",
    f"select x from range(3) t(x) join range(2) u(y) on x = {V}",
    f"select 1 as v where not {V}",
    f"select {V} as a, '{V}' as b, 1 as c -- {V}",
    f"select {V} as v union all select {V}",
]
NAMED = [f'select 1 as "{V}"', f'select 1 as "a""{V}"""']
# positions where every value is refused: DuckDB would read a value there by other rules, or as more than a value
REFUSED = [
    f"select E'{V}' as v",
    f"select e'a\\'{V}' as v",
    f"select $$ {V}$$ as v",
    f"select $€$ {V}$€$ as v",
    f"select $a$ {V} $a$ as v",
    f"select x'{V}' as v",
    f"select b'{V}' as v",
    f"select N'{V}' as v",
    f"select x{V} as v",
    f"select {V}x as v",
    f"select {V}{V} as v",
    f"select 1{V} as v",
    f"select count {V}",
    f"select abs {V}",
    f"select 1::{V}",
    f"select t.{V} from (select 1 as a) t",
    f"select 1 as v order by {V}",
    f"select 1 as v group by {V}",
    f"select {V}(1) as v",
    f"select 1 as {V}",
    f"select date {V}",
    f"select 1 is {V}",
    f"select x in {V} from (select 1 as x)",
    f"select ? {V}",
    f"select cast(1 as {V})",
    f"select 1 as v from (select 1) t {V}",
    f"select $1 {V}",
]
ALPHABET = [
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    "--",
    "/*",
    "*/",
    "$",
    "$$",
    "$€$",
    "$a$",
    "€",
    "\n",
    "\r",
    "\t",
    " ",
    ";",
    ",",
    "(",
    ")",
    "E'",
    "x",
    "1",
    "-",
    "-1",
    "union all select 42",
    "ｘ’",
    "\x00",
    "\u2028",
    "🙂",
    "?",
    "::",
    "e",
    "U&'",
    "\\x27",
    "%",
    "}}",
    "${{ inputs.v }}",
    "select",
    "as",
    "`",
]


def _values(rng: random.Random) -> list:
    ints = [0, 1, -1, 2**63 - 1, -(2**63), 10**40, -(10**40)] + [
        rng.randint(-(10**12), 10**12) for _ in range(VALUES_PER_KIND)
    ]
    floats = [math.inf, -math.inf, math.nan, -0.0, 0.0, 1e300, -1e300, 5e-324, -5e-324, 0.1 + 0.2] + [
        rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30) for _ in range(VALUES_PER_KIND)
    ]
    decimals = [decimal.Decimal("-0"), decimal.Decimal("1E+2"), decimal.Decimal("-12.50"), decimal.Decimal("NaN")]
    strings = ["", "-1", "1e5"] + [
        "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8))) for _ in range(VALUES_PER_KIND * 6)
    ]
    dates = [
        dt.date(2024, 1, 2),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.time(23, 59, 1),
    ]
    lists = [[], [1], [-1, 2, -3], ["a'b", "--", "$€$"], [[1, -2], [3]], ("t", "u")] + [
        [rng.randint(-9, 9) for _ in range(rng.randint(1, 4))] for _ in range(VALUES_PER_KIND // 4)
    ]
    others = [None, True, False, {"a": "b'c", "n": -1}, b"\x00'\\x", b"", StoredTable("/x.parquet", name='we"ird')]
    return ints + floats + decimals + strings + dates + lists + others


def _reference(value):
    """A harmless value of the same kind (and, for a list, the same length)."""
    if value is None or isinstance(value, (bool, StoredTable, dict, bytes, dt.datetime, dt.date, dt.time)):
        return value if not isinstance(value, (dict, bytes)) else type(value)()
    if isinstance(value, int):
        return 7
    if isinstance(value, float):
        return 1.5 if math.isfinite(value) else math.inf
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal("1.5") if value.is_finite() else decimal.Decimal("NaN")
    if isinstance(value, (list, tuple)):
        return type(value)(_reference(v) for v in value)
    return "x"


def _render(query: str, value) -> str:
    return sql_text.render(query, lambda ref: value)


_JSON_TEXT = r'"(?:[^"\\]|\\.)*"'
_OFFSETS = re.compile(r'"query_location(?:_length)?":\d+')
_LITERAL = re.compile(r'"literal":\{"kind":"\w+","text":' + _JSON_TEXT + r"\}")
_ALIAS = re.compile(r'"alias":' + _JSON_TEXT)


def _shape(serialized: str, name: bool) -> str:
    """A parsed statement with what a value may change masked: constants' text and kind, offsets (and aliases)."""
    if serialized.startswith('{"error":true'):
        return "error"
    shape = _LITERAL.sub('"literal":*', _OFFSETS.sub("*", serialized))
    return _ALIAS.sub('"alias":*', shape) if name else shape


@pytest.mark.slow
def test_no_generated_value_changes_the_parsed_query():
    values = _values(random.Random(SEED))
    pairs, refused_where_placed, references = [], [], {}
    for query in PLACED + NAMED:
        for value in values:
            reference = _reference(value)
            key = (query, repr(reference))
            if key not in references:
                references[key] = _render(query, reference)
            try:
                pairs.append((query, value, _render(query, value), references[key]))
            except sql_text.SqlTemplateError as exc:
                refused_where_placed.append((query, value, str(exc)))
    con = duckdb.connect()
    texts = sorted({p[2] for p in pairs} | {p[3] for p in pairs})
    parsed = dict(con.execute("select q, json_serialize_sql(q) from unnest($1::varchar[]) u(q)", [texts]).fetchall())
    changed = []
    for query, value, rendered, reference in pairs:
        name = query in NAMED
        got, want = _shape(parsed[rendered], name), _shape(parsed[reference], name)
        if got != want or got == "error":
            changed.append((query, value, rendered, reference))
    assert refused_where_placed == []
    assert len(pairs) > 10_000
    # 0 of N values changed the parsed statement; only `""`, an empty name, fails to parse (DuckDB has none)
    assert [c for c in changed if not (c[0] == NAMED[0] and _empty_name(c[1]))] == []
    print(
        f"\nfuzz: 0 of {len(pairs)} rendered (value, position) pairs changed the parsed query "
        f"({len(values)} values x {len(PLACED + NAMED)} positions)"
    )


def _empty_name(value) -> bool:
    return sql_text._text(value) == ""


def test_every_value_is_refused_where_no_value_can_stand():
    values = _values(random.Random(SEED + 1))
    placed = [(q, v) for q in REFUSED for v in values if _refused(q, v) is False]
    assert placed == []
    assert len(REFUSED) * len(values) > 5_000


def _refused(query: str, value) -> bool:
    try:
        _render(query, value)
    except sql_text.SqlTemplateError:
        return True
    return False


@pytest.mark.parametrize("kind", ["code", "string", "name"])
def test_values_come_back_unchanged(kind):
    """`select ${{ v }}` returns v, `select '${{ v }}'` its text, `select 1 as "${{ v }}"` a column named by it."""
    con = duckdb.connect()
    values = _values(random.Random(SEED + 2))
    checked = 0
    for value in values:
        if kind == "code":
            if isinstance(value, StoredTable):
                continue
            got = con.sql(_render(f"select {V} as v", value)).fetchall()
            assert len(got) == 1 and len(got[0]) == 1, value
            assert _same(got[0][0], value), (value, got)
        elif kind == "string":
            got = con.sql(_render(f"select '{V}' as v", value)).fetchall()
            assert got == [(sql_text._text(value),)], value
        elif _empty_name(value) or "\x00" in sql_text._text(value):
            continue
        else:
            rel = con.sql(_render(f'select 1 as "{V}"', value))
            assert rel.columns == [sql_text._text(value)], value
        checked += 1
    assert checked > 200


def _same(got, value) -> bool:
    if isinstance(value, float):
        return (math.isnan(value) and math.isnan(got)) or float(got) == value
    if isinstance(value, decimal.Decimal):
        return (value.is_nan() and math.isnan(got)) or decimal.Decimal(got) == value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**127:
        return float(got) == float(value)
    if isinstance(value, (list, tuple)):
        return len(got) == len(value) and all(_same(g, v) for g, v in zip(got, value))
    if isinstance(value, dict):
        return json.loads(got) == value
    return got == value
