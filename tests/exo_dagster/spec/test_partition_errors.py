"""`partitions:` and `${{ partition.* }}` mistakes are located errors, reported with the file's other errors."""

from __future__ import annotations

from exo_dagster import load_cluster_file
from tests.exo_dagster.spec.test_parser_errors import assert_error, errors_of

HEAD = """\
version: 0.0.1b
cluster:
  identifier: acme/parts
"""


def step(query: str = "select 1 as x") -> str:
    return f"""\
  satellites:
    - name: Q
      uses: satellite/exospherehost/sql
      identifier: q
      config: {{query: "{query}"}}
"""


def test_daily_partitions_parse_an_unquoted_date(write_cluster):
    # YAML hands `2026-11-01` over as a datetime.date: accepted, kept as ISO text
    path = write_cluster(HEAD + "  partitions:\n    daily: {start: 2026-11-01, timezone: Europe/Berlin}\n" + step())
    cluster = load_cluster_file(path)
    parts = cluster.spec.partitions
    assert (parts.kind, parts.time.start, parts.time.timezone, parts.time.end) == (
        "daily",
        "2026-11-01",
        "Europe/Berlin",
        None,
    )


def test_static_partitions_parse(write_cluster):
    cluster = load_cluster_file(write_cluster(HEAD + "  partitions:\n    static: [eu, us, apac]\n" + step()))
    assert cluster.spec.partitions.kind == "static" and cluster.spec.partitions.static == ["eu", "us", "apac"]


def test_two_kinds_bad_timezone_and_a_template_error_in_one_report(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  partitions:
    daily: {start: "2026-11-01", timezone: Mars/Base}
    static: [eu]
"""
        + step("select ${{ partition.nope }}"),
    )
    assert_error(err, file, 6, 5, "`partitions` has one kind, got daily, static", "keep one of them")
    assert_error(err, file, 5, 44, "unknown timezone `Mars/Base`", "IANA name")
    assert_error(
        err, file, 11, 35, "`partition.nope` is not a partition field", "partition.key, partition.start, partition.end"
    )


def test_bad_start_and_end_before_start(write_cluster):
    file, err = errors_of(write_cluster, HEAD + '  partitions:\n    hourly: {start: "2026-13-01"}\n' + step())
    assert_error(err, file, 5, 21, "`start`: '2026-13-01' is not a date", "YYYY-MM-DD")
    file, err = errors_of(
        write_cluster, HEAD + "  partitions:\n    weekly: {start: 2026-11-01, end: 2026-10-01}\n" + step()
    )
    assert_error(err, file, 5, 13, "`end` (2026-10-01) must be after `start` (2026-11-01)")


def test_duplicate_and_empty_static_keys(write_cluster):
    file, err = errors_of(write_cluster, HEAD + '  partitions:\n    static: [eu, us, eu, "bad\\tkey"]\n' + step())
    assert_error(err, file, 5, 22, "duplicate partition key `eu`", "may appear once")
    assert_error(err, file, 5, 26, "partition key 'bad\\tkey' holds '\\t'")
    file, err = errors_of(write_cluster, HEAD + "  partitions:\n    static: []\n" + step())
    assert_error(err, file, 5, 13, "`static` needs at least one partition key")
    file, err = errors_of(write_cluster, HEAD + "  partitions: {}\n" + step())
    assert_error(err, file, 4, 3, "`partitions` needs a kind")


def test_partition_template_without_partitions(write_cluster):
    file, err = errors_of(write_cluster, HEAD + step("select ${{ partition.key }} as day"))
    assert_error(err, file, 8, 31, "this cluster has no partitions; add `partitions:`")


def test_partition_start_in_a_static_cluster(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + "  partitions:\n    static: [eu, us]\n"
        + step("select ${{ partition.start }} as s, ${{ partition.key }} as k"),
    )
    assert_error(err, file, 10, 31, "static partitions have no start", "use `${{ partition.key }}`")
    assert len(err.errors) == 1  # partition.key is fine there


def test_partition_template_in_a_failure_section(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + "  partitions:\n    static: [eu]\n"
        + step()
        + """\
  failure:
    satellites:
      - {name: Note, uses: satellite/exospherehost/sql, identifier: note,
         config: {query: "select ${{ partition.key }}"}}
""",
    )
    assert_error(err, file, 14, 34, "only available in the cluster's `satellites`")


def test_a_files_trigger_on_a_partitioned_cluster(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + '  trigger:\n    - {cron: "0 6 * * *"}\n    - {files: {path: inbox}}\n'
        + "  partitions:\n    static: [eu]\n"
        + step(),
    )
    assert_error(err, file, 6, 8, "a `files` trigger cannot start a partitioned cluster", "cron")
    assert len(err.errors) == 1
