"""`skip-when-empty` mistakes are located errors, reported with the file's other errors."""

from __future__ import annotations

from exo_dagster import load_cluster_file
from tests.exo_dagster.spec.test_parser_errors import assert_error, errors_of

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/skips{execution}
  satellites:
    - name: Orders
      uses: satellite/exospherehost/sql
      identifier: orders
      skip-when-empty: {first}
      config: {{query: "select 1 as n"}}
    - name: Regions
      uses: satellite/exospherehost/sql
      identifier: regions
      skip-when-empty: {second}
      config: {{query: "select 'eu' as region"}}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      skip-when-empty: true
      config: {{query: "select count(*) as n from orders"}}
"""


def _text(execution: str = "", first: str = "false", second: str = "true") -> str:
    return CLUSTER.format(execution=execution and f"\n  execution: {execution}", first=first, second=second)


def test_valid_uses_load(write_cluster):
    cluster = load_cluster_file(write_cluster(_text()))  # sequential: `regions` reads the step above it
    assert [s.spec.skip_when_empty for s in cluster.steps] == [False, True, True]


def test_the_first_step_reads_no_table(write_cluster):
    file, err = errors_of(write_cluster, _text(first="true"))
    assert_error(
        err,
        file,
        8,
        7,
        "`skip-when-empty` skips a step whose input has no rows, but this step reads no table",
        "it is the first satellite",
        "add `after: [X]`",
    )
    assert len(err.errors) == 1


def test_in_dataflow_a_step_without_references_reads_no_table(write_cluster):
    file, err = errors_of(write_cluster, _text(execution="dataflow"))
    assert_error(err, file, 14, 7, "reads no table", "`execution: dataflow`", "or remove `skip-when-empty`")
    assert [e.location.line for e in err.errors] == [14]  # `totals` references `orders`: fine


def test_after_gives_a_dataflow_step_its_input(write_cluster):
    text = _text(execution="dataflow").replace(
        "      skip-when-empty: true\n      config: {query: \"select 'eu'",
        "      skip-when-empty: true\n      after: [orders]\n      config: {query: \"select 'eu'",
    )
    cluster = load_cluster_file(write_cluster(text))
    assert cluster.step("regions").references == ("orders",)


def test_a_non_bool_value_is_reported_with_the_other_errors(write_cluster):
    file, err = errors_of(
        write_cluster, _text(first="maybe", second="2").replace("identifier: totals", "identifer: totals")
    )
    assert_error(err, file, 8, 24, "`skip-when-empty`", "change it to true or false")
    assert_error(err, file, 13, 24, "`skip-when-empty`", "change it to true or false")  # 0 and 1 are booleans, 2 is not
    assert_error(err, file, 17, 7, "unknown key `identifer`")


def test_not_in_the_failure_or_logs_sections(write_cluster):
    text = (
        _text()
        + """\
  failure:
    satellites:
      - name: Note
        uses: satellite/exospherehost/sql
        skip-when-empty: true
        config: {query: "select 1 as n"}
"""
    )
    file, err = errors_of(write_cluster, text)
    assert_error(err, file, 24, 9, "applies to the cluster's satellites, not to its `failure:` section")
