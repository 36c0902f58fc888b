"""A `sql` template where no value can stand is a located error at validate time, at the template itself."""

from __future__ import annotations

from exo_dagster import load_cluster_file
from tests.exo_dagster.spec.test_parser_errors import assert_error, errors_of

HEAD = """\
version: 0.0.1b
cluster:
  identifier: acme/positions
  satellites:
    - name: Q
      uses: satellite/exospherehost/sql
      identifier: q
"""


def test_each_refused_template_is_located(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
      config:
        query: "select $$ ${{ env.A }} $$ as a, E'${{ env.B }}' as b, x${{ env.C }} as c, ${{ env.D }} as d"
""",
    )
    assert_error(err, file, 9, 27, "`${{ env.A }}` is inside a $-quoted string", "use a '...' string")
    assert_error(err, file, 9, 51, "`${{ env.B }}` is inside a `E'...'` string", "plain '...' string")
    assert_error(err, file, 9, 72, "`${{ env.C }}` is glued to other text (`x${{ env.C }}`)", "put a space")
    assert len(err.errors) == 3  # `${{ env.D }}` stands as a value: no error


def test_a_template_after_a_name_or_by_is_refused(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
      config:
        query: "select count ${{ env.A }}, 1 as x order by ${{ env.B }}"
""",
    )
    assert_error(err, file, 9, 30, "follows `count`", "after an operator, a comma")
    assert_error(err, file, 9, 60, "follows `by`")


def test_templates_where_values_can_stand_validate(write_cluster):
    cluster = load_cluster_file(
        write_cluster(
            HEAD
            + """\
      config:
        query: "select 10-${{ env.N }} as v, '${{ env.S }}' as s, 1 as \\"${{ env.C }}\\" -- ${{ env.X }}"
""",
            "ok.yaml",
        )
    )
    assert [s.identifier for s in cluster.spec.satellites] == ["q"]


def test_a_per_row_value_in_sql_text_is_refused(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD.replace(
            "    - name: Q",
            """\
    - name: Names
      uses: satellite/exospherehost/sql
      identifier: names
      config: {query: "select 'a' as name"}
    - name: Q""",
        )
        + """\
      config: {query: "select 1 as x"}
      input: {query: "select '$${{ satellites.names.output.name }}' as v"}
""",
    )
    assert_error(err, file, 13, 31, "`$${{ satellites.names.output.name }}` is a per-row value")
