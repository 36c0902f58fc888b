"""A failed step points at its cause: `exo/source` is the config key or template that failed (FILE:LINE:COL),
not the step's first line, and `exo/cause` says what kind of cause it is (missing file, permission, bad value,
remote). Unit checks of the located keys and of the sorting, then one real Dagster run with five failing steps."""

from __future__ import annotations

import glob
import os
import socket

import dagster as dg
import duckdb
import httpx
import pytest

from exo_dagster import compile_cluster, load_cluster_file, parse_cluster
from exo_dagster.runtime.step_failure import failed_key, location_metadata, step_failure
from exo_dagster.sdk import step_errors
from exo_dagster.sdk.allowed_paths import PathOutside
from exo_dagster.sdk.step_errors import BAD_VALUE, BUG, MISSING_FILE, PERMISSION, REMOTE, MissingFile, cause
from tests.loopback import free_port, http_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

TWO_STEPS = """\
version: 0.0.1b
cluster:
  identifier: t/where
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      identifier: read
      config:
        format: csv
        path: "in/${{ env.EXO_TEST_FILE }}.csv"
    - name: Query
      uses: satellite/exospherehost/sql
      identifier: query
      config:
        query: |
          select *
          from read
          where amount > ${{ env.EXO_TEST_MIN }}
    - name: Archive
      uses: satellite/exospherehost/move-file
      identifier: archive
      config:
        destination: done
        storage-options: {region: x}
"""


def _line_col(text: str, needle: str, after: str = "") -> tuple[int, int]:
    start = text.index(after) if after else 0
    at = text.index(needle, start)
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def test_each_config_key_and_template_is_located_also_inside_a_block_value():
    cluster = parse_cluster(TWO_STEPS, "/c/where.yaml")
    read, query, archive = cluster.steps
    path_at, region_at = read.key_locations["config.path"], archive.key_locations["config.storage-options.region"]
    assert (path_at.line, path_at.column) == _line_col(TWO_STEPS, "path:")
    assert (region_at.line, region_at.column) == _line_col(TWO_STEPS, "region")
    spot = read.template_locations[("config.path", "${{ env.EXO_TEST_FILE }}")]
    assert (spot.line, spot.column) == _line_col(TWO_STEPS, "${{ env.EXO_TEST_FILE }}")
    spot = query.template_locations[("config.query", "${{ env.EXO_TEST_MIN }}")]  # three lines below `query: |`
    assert (spot.line, spot.column) == _line_col(TWO_STEPS, "${{ env.EXO_TEST_MIN }}")


def test_every_key_location_in_the_shipped_clusters_is_where_that_key_is_written():
    """Over every cluster file in the repository: the location of each config/input key is that key's text."""
    files = sorted(
        glob.glob(os.path.join(ROOT, "definitions", "*.yaml"))
        + glob.glob(os.path.join(ROOT, "tests", "**", "*.yaml"), recursive=True)
    )
    checked = 0
    for path in files:
        try:
            cluster = load_cluster_file(path)
        except Exception:
            continue
        lines = open(path, encoding="utf-8").read().splitlines()
        for step in cluster.steps + cluster.logs_steps + cluster.failure_steps:
            for key, where in step.key_locations.items():
                name = key.rsplit(".", 1)[-1]
                written = lines[where.line - 1][where.column - 1 :]
                assert written.startswith(name) or written.lstrip("'\"- ").startswith(name) or name.isdigit(), (
                    path,
                    key,
                    where,
                    lines[where.line - 1],
                )
                checked += 1
    assert checked >= 20, checked


def test_the_failing_key_is_found_by_its_yaml_name_or_its_field_name_and_unknown_keys_fall_back_to_the_step():
    read, _, archive = parse_cluster(TWO_STEPS, "/c/where.yaml").steps
    path_at = f"/c/where.yaml:{':'.join(map(str, _line_col(TWO_STEPS, 'path:')))}"
    options_at = f"/c/where.yaml:{':'.join(map(str, _line_col(TWO_STEPS, 'storage-options')))}"
    for step, named, expected in [
        (read, "path", ("config.path", path_at)),
        (read, "config.path", ("config.path", path_at)),
        (archive, "storage_options", ("config.storage-options", options_at)),
        (read, "sheet", (None, None)),
        (read, "input.paths", (None, None)),
    ]:
        key, where = failed_key(step, step_errors.at_key(ValueError("x"), named))
        assert (key, str(where) if where else None) == expected, named
    assert location_metadata(read, ValueError("no key"))["exo/source"] == str(read.location)
    templated = step_errors.at_key(RuntimeError("not set"), "config.path")
    templated.template = "${{ env.EXO_TEST_FILE }}"
    line, column = _line_col(TWO_STEPS, "${{ env.EXO_TEST_FILE }}")
    assert location_metadata(read, templated)["exo/source"] == f"/c/where.yaml:{line}:{column}"
    inner = step_errors.at_key(ValueError("deeper"), "path")
    assert step_errors.at_key(inner, "input.paths").config_key == "path"  # the deepest layer's key wins


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # the real exception the library raises
        return exc
    raise AssertionError("did not raise")


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: _raised(lambda: open("/no/such/file")), MISSING_FILE),
        (lambda: MissingFile("/abs/x.csv", "read-table"), MISSING_FILE),
        (lambda: _raised(lambda: duckdb.sql("select * from read_csv('/no/such.csv')")), MISSING_FILE),
        (lambda: PathOutside("move-file `destination` `/etc` is outside the allowed folders"), PERMISSION),
        (lambda: PermissionError("read-table: no permission to read /x"), PERMISSION),
        (lambda: _raised(lambda: duckdb.sql("select nope from range(1)")), BAD_VALUE),
        (lambda: step_errors.PermanentError("bad input"), BAD_VALUE),
        (lambda: _raised(lambda: httpx.get(f"http://127.0.0.1:{free_port()}/", timeout=2)), REMOTE),
        (lambda: _raised(lambda: socket.create_connection(("127.0.0.1", free_port()), timeout=1)), REMOTE),
        (
            lambda: httpx.HTTPStatusError(
                "boom",
                request=httpx.Request("GET", "http://x"),
                response=httpx.Response(404, request=httpx.Request("GET", "http://x")),
            ),
            REMOTE,
        ),
        (lambda: TimeoutError("read timed out"), REMOTE),
        (lambda: AttributeError("'NoneType' object has no attribute 'x'"), BUG),
    ],
    ids=[
        "os-missing",
        "missing-file",
        "duckdb-missing",
        "outside",
        "permission",
        "duckdb-binder",
        "permanent",
        "connect",
        "refused",
        "http-404",
        "timeout",
        "bug",
    ],
)
def test_the_cause_of_an_error_is_named(make, expected):
    assert cause(make()) == expected


def test_a_missing_file_fails_as_one_with_the_absolute_path_and_the_key():
    read = parse_cluster(TWO_STEPS, "/c/where.yaml").steps[0]
    failure = step_failure(MissingFile("/c/in/x.csv", "read-table", config_key="path"), step_errors.PERMANENT, read)
    line, column = _line_col(TWO_STEPS, "path:")
    assert (
        failure.description
        == f"read-table: missing file: /c/in/x.csv (from config.path at /c/where.yaml:{line}:{column})"
    )
    assert failure.metadata["exo/cause"].value == "missing-file"
    assert failure.metadata["exo/error"].value == "MissingFile"
    assert failure.metadata["exo/config-key"].value == "config.path" and not failure.allow_retries


CAUSES = """\
version: 0.0.1b
cluster:
  identifier: t/causes
  execution: dataflow
  satellites:
    - name: Read orders
      uses: satellite/exospherehost/read-table
      identifier: orders
      config:
        format: csv
        path: data/orders-missing.csv
    - name: Report
      uses: satellite/exospherehost/sql
      identifier: report
      config:
        query: |
          select 1 as x
          where 1 = ${{{{ env.EXO_TEST_NOT_SET }}}}
    - name: Archive
      uses: satellite/exospherehost/move-file
      identifier: archive
      config:
        destination: ${{{{ env.EXO_TEST_DEST }}}}
      input:
        paths: [/etc/exo-test-elsewhere.txt]
    - name: Archive again
      uses: satellite/exospherehost/move-file
      identifier: rearchive
      config:
        destination: done
      input:
        paths: [/etc/exo-test-elsewhere.txt]
    - name: Numbers
      uses: satellite/exospherehost/sql
      identifier: numbers
      config:
        query: select 1 as x
    - name: Per row
      uses: satellite/exospherehost/call-webhook
      identifier: rowhook
      config:
        url: {url}/ok
      input:
        id: $${{{{ satellites.numbers.output.nope }}}}
    - name: Notify
      uses: satellite/exospherehost/call-webhook
      identifier: notify
      retries: 0
      config:
        url: {url}/gone
        body: {{ping: 1}}
"""


@pytest.mark.slow
def test_one_run_where_each_failure_points_at_the_key_or_template_that_caused_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    monkeypatch.setenv("EXO_TEST_DEST", "/etc/exo-not-allowed")
    monkeypatch.delenv("EXO_TEST_NOT_SET", raising=False)
    path = tmp_path / "causes.yaml"
    with http_server() as server, dg.instance_for_test() as instance:
        server.status["/gone"] = 404
        text = CAUSES.format(url=server.url)
        path.write_text(text)
        cluster = load_cluster_file(path)
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
    failed = {
        e.step_key.split("__", 1)[0]: e.step_failure_data.user_failure_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    }
    assert set(failed) == {"orders", "report", "archive", "rearchive", "rowhook", "notify"}, set(failed)

    def at(needle: str, after: str) -> str:
        return f"{path}:{':'.join(map(str, _line_col(text, needle, after)))}"

    expected = {  # step: (exo/source, exo/cause, the start of the description)
        "orders": (
            at("path:", "Read orders"),
            "missing-file",
            f"read-table: missing file: {tmp_path / 'data' / 'orders-missing.csv'} (from config.path at ",
        ),
        "report": (
            at("${{ env.EXO_TEST_NOT_SET }}", "Report"),
            "bad-value",
            "step `report` reads environment variable `EXO_TEST_NOT_SET`, which is not set (from config.query",
        ),
        "archive": (
            at("${{ env.EXO_TEST_DEST }}", "Archive"),
            "bad-value",  # refused by the config's own check
            "config of step `archive` is invalid after resolving templates:\n  destination: `/etc/exo-not-allowed`",
        ),
        "rearchive": (
            at("paths:", "Archive again"),
            "permission",
            "move-file: `/etc/exo-test-elsewhere.txt` is outside",
        ),
        "rowhook": (
            at("$${{ satellites.numbers.output.nope }}", "Per row"),
            "bad-value",
            "`$${{ satellites.numbers.output.nope }}`: column `nope` is not in `numbers`'s output",
        ),
        "notify": (at("name: Notify", "Per row"), "remote", "POST "),  # a remote error: the step itself
    }
    for step, (source, kind, start) in expected.items():
        user = failed[step]
        got = (user.metadata["exo/source"].value, user.metadata["exo/cause"].value, user.description[: len(start)])
        assert got == (source, kind, start), step
    assert "answered 404" in failed["notify"].description
    assert f"(from input.paths at {expected['rearchive'][0]})" in failed["rearchive"].description
