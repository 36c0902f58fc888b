"""Run inputs in the spec: each type's values, and every misuse a located error with the file's other errors."""

from __future__ import annotations

import datetime as dt

import pytest

from exo_dagster import load_cluster_file
from exo_dagster.spec.input_values import InputValueError, coerce, parse_assignment, resolve_values
from exo_dagster.spec.models import RunInput
from tests.exo_dagster.spec.test_parser_errors import HEAD, assert_error, errors_of

SQL = """\
  satellites:
    - name: Query
      identifier: q
      uses: satellite/exospherehost/sql
      config: {query: "select ${{ inputs.region }} as r"}
"""


@pytest.mark.parametrize(
    "kind, given, expected",
    [
        ("string", "west", "west"),
        ("string", 10, "10"),
        ("int", "12", 12),
        ("int", 12, 12),
        ("float", "2.5", 2.5),
        ("float", 2, 2.0),
        ("bool", "yes", True),
        ("bool", "False", False),
        ("bool", True, True),
        ("date", "2026-11-01", "2026-11-01"),
        ("date", dt.date(2026, 11, 1), "2026-11-01"),
        ("datetime", "2026-11-01T08:30:00", "2026-11-01T08:30:00"),
        ("datetime", "2026-11-01 08:30", "2026-11-01T08:30:00"),
        ("list", "a, b", ["a", "b"]),
        ("list", "[1, 2]", [1, 2]),
        ("list", [1, "x"], [1, "x"]),
        ("list", "", []),
    ],
)
def test_each_type_has_one_canonical_value(kind, given, expected):
    assert coerce(RunInput(type=kind), given) == expected


@pytest.mark.parametrize(
    "kind, given, needle",
    [
        ("string", True, "must be a string"),
        ("string", {"a": 1}, "must be a string"),
        ("int", "1.5", "whole number"),
        ("int", True, "whole number"),
        ("int", 1.5, "whole number"),
        ("float", "lots", "a number"),
        ("bool", "maybe", "true or false"),
        ("bool", 1, "true or false"),
        ("date", "2026-13-01", "YYYY-MM-DD"),
        ("date", "01/11/2026", "YYYY-MM-DD"),
        ("date", dt.datetime(2026, 11, 1, 8), "datetime"),
        ("datetime", "tomorrow", "2026-11-01T08:00:00"),
        ("list", "[1, ", "JSON list"),
        ("list", [[1]], "plain values"),
    ],
)
def test_a_value_that_does_not_fit_says_what_it_needs(kind, given, needle):
    with pytest.raises(InputValueError, match=needle):
        coerce(RunInput(type=kind), given)


def test_an_enum_takes_only_its_values_and_keeps_their_type():
    tier = RunInput(type="enum", values=["gold", 2])
    assert coerce(tier, "gold") == "gold" and coerce(tier, "2") == 2 and coerce(tier, 2) == 2
    with pytest.raises(InputValueError, match="one of gold, 2"):
        coerce(tier, "bronze")


def test_resolve_values_applies_defaults_and_reports_every_problem_at_once():
    declared = {
        "region": RunInput(default="west"),
        "since": RunInput(type="date", required=True),
        "top": RunInput(type="int", default=10),
        "note": RunInput(),
    }
    assert resolve_values(declared, {"since": "2026-11-01"}) == {
        "region": "west",
        "since": "2026-11-01",
        "top": 10,
        "note": None,
    }
    with pytest.raises(InputValueError) as info:
        resolve_values(declared, {"top": "x", "regoin": "east"})
    text = str(info.value)
    assert (
        "`regoin` is not declared" in text and "`since` is required" in text and "`top` must be a whole number" in text
    )


def test_assignments_split_at_the_first_equals_sign():
    assert parse_assignment("query=a=b") == ("query", "a=b")
    with pytest.raises(InputValueError, match="NAME=VALUE"):
        parse_assignment("region")


def test_a_cluster_with_inputs_loads_and_keeps_them(write_cluster):
    path = write_cluster(
        HEAD
        + """\
  inputs:
    region: {type: string, default: west, description: Sales region}
    since:  {type: date, required: true}
    top:    {type: int, default: 10}
    tier:   {type: enum, values: [gold, silver], default: gold}
    day:    {type: date, default: 2026-11-01}
  trigger:
    - cron: "0 6 * * *"
      inputs: {since: 2026-11-01}
    - cron: "0 18 * * *"
      timezone: Europe/Berlin
      inputs: {since: 2026-11-02, region: east}
"""
        + SQL
    )
    cluster = load_cluster_file(path)
    assert list(cluster.spec.inputs) == ["region", "since", "top", "tier", "day"]
    assert cluster.spec.inputs["since"].required and cluster.spec.inputs["day"].default == "2026-11-01"
    assert [t.inputs for t in cluster.spec.triggers] == [
        {"since": "2026-11-01"},
        {"since": "2026-11-02", "region": "east"},
    ]


def test_every_misuse_of_inputs_is_located(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  inputs:
    top:    {type: int, default: ten}
    kind:   {type: enum}
    both:   {type: string, required: true, default: x}
    my-day: {type: date}
    since:  {type: date, required: true}
    colour: {type: colour}
  trigger:
    - cron: "0 6 * * *"
      inputs: {since: 2026-13-01, regoin: x}
    - cron: "0 7 * * *"
  satellites:
    - name: Query
      identifier: q
      uses: satellite/exospherehost/sql
      config: {query: "select ${{ inputs.sinc }} as s"}
  failure:
    satellites:
      - name: Alert
        uses: satellite/exospherehost/send-alert
        config: {format: slack, url: "http://127.0.0.1:9/x", text: "${{ inputs.since }}"}
""",
    )
    assert_error(err, file, 5, 13, "`default:` must be a whole number", "`type:`")
    assert_error(err, file, 6, 13, "an `enum` input needs `values: [...]`")
    assert_error(err, file, 7, 13, "not `required:`")
    assert_error(err, file, 8, 5, "input name `my-day` must be letters, digits and `_`", "my_day")
    assert_error(err, file, 10, 20, "`type`", "string, int, float, bool, date, datetime, list, enum")
    assert_error(err, file, 13, 23, "input `since` must be a date written YYYY-MM-DD")
    assert_error(
        err, file, 13, 35, "gives input `regoin`, which is not declared", "declare it under the cluster's `inputs:`"
    )
    assert_error(err, file, 14, 7, "launches runs without the required input `since`", "default:")
    assert_error(err, file, 19, 31, "reads input `sinc`, which is not declared", "did you mean `since`?")
    assert_error(err, file, 24, 69, "not by its `failure:` section")
    assert len(err.errors) == 10, err.report()


def test_a_list_of_triggers_reports_each_entry_where_it_is(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  trigger:
    - cron: "61 * * * *"
    - files: {path: in}
      colour: blue
    - {cron: "0 * * * *", files: {path: in}}
    - cron: "0 * * * *"
      timezone: Mars/Base
"""
        + SQL.replace("${{ inputs.region }}", "1"),
    )
    assert_error(err, file, 5, 13, "not a valid cron expression")
    assert_error(err, file, 7, 7, "unknown key `colour`", "cron, timezone, files, after, inputs")
    assert_error(err, file, 8, 7, "a trigger has one kind", "list")
    assert_error(err, file, 10, 17, "unknown timezone `Mars/Base`")
    assert len(err.errors) == 4, err.report()
