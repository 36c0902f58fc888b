"""Failed steps: the satellite's message and the YAML location first; permanent errors are not retried,
transient ones are, and `failure.error` is the last attempt's cause, not Dagster's retry wrapper."""

from __future__ import annotations

import socket

import dagster as dg
import duckdb
import httpx
import pytest

from exo_dagster import compile_cluster, parse_cluster
from exo_dagster.sdk.step_errors import BUG, PERMANENT, TRANSIENT, PermanentError, TransientError, kind
from exo_dagster.sections.failure import failure_fields
from tests.loopback import free_port, http_server


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # the real exception the library raises
        return exc
    raise AssertionError("did not raise")


def _closed_port_error():
    port = free_port()
    return _raised(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2))


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: _raised(lambda: open("/no/such/file")), PERMANENT),
        (lambda: _raised(lambda: duckdb.sql("select nope from range(1)")), PERMANENT),
        (lambda: _raised(lambda: duckdb.sql("select * from read_csv('/no/such.csv')")), PERMANENT),
        (lambda: ValueError("cannot tell the format"), PERMANENT),
        (lambda: PermanentError("bad input"), PERMANENT),
        (_closed_port_error, TRANSIENT),
        (lambda: _raised(lambda: socket.create_connection(("127.0.0.1", free_port()), timeout=1)), TRANSIENT),
        (lambda: TimeoutError("read timed out"), TRANSIENT),
        (lambda: TransientError("busy"), TRANSIENT),
        (lambda: AttributeError("'NoneType' object has no attribute 'x'"), BUG),
        (lambda: ZeroDivisionError("division by zero"), BUG),
    ],
    ids=[
        "missing-file",
        "duckdb-binder",
        "duckdb-io",
        "value",
        "permanent",
        "httpx-connect",
        "socket-refused",
        "timeout",
        "transient",
        "attribute-bug",
        "zero-division-bug",
    ],
)
def test_errors_are_sorted_into_permanent_transient_and_bugs(make, expected):
    assert kind(make()) == expected


@pytest.mark.parametrize(
    "status, expected", [(404, PERMANENT), (400, PERMANENT), (429, TRANSIENT), (500, TRANSIENT), (503, TRANSIENT)]
)
def test_http_status_decides(status, expected):
    request = httpx.Request("POST", "http://127.0.0.1/x")
    error = httpx.HTTPStatusError("boom", request=request, response=httpx.Response(status, request=request))
    assert kind(error) == expected


MISSING = """\
version: 0.0.1b
cluster:
  identifier: t/missing
  retries: 3
  retry: {{delay: 0}}
  satellites:
    - name: Find files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {{folder-path: "{folder}"}}
"""

FLAKY = """\
version: 0.0.1b
cluster:
  identifier: t/flaky
  retries: 2
  retry: {{delay: 0}}
  satellites:
    - name: Call the service
      uses: satellite/exospherehost/call-webhook
      identifier: call
      config: {{url: "{url}/busy", mode: per-batch, body: {{ping: 1}}}}
"""


def _events(result, kind_):
    return [e for e in result.all_events if e.event_type == kind_]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))


@pytest.mark.slow
def test_a_missing_folder_fails_at_once_with_its_message_and_yaml_location(tmp_path, data_dir):
    path = tmp_path / "missing.yaml"
    text = MISSING.format(folder=tmp_path / "nope")
    cluster = parse_cluster(text, str(path))
    with dg.instance_for_test() as instance:
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not result.success
        assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []  # retries: 3, but retrying cannot help
        [failed] = _events(result, dg.DagsterEventType.STEP_FAILURE)
        user = failed.step_failure_data.user_failure_data
        line, column = next(
            (i, written.index("folder-path") + 1)
            for i, written in enumerate(text.splitlines(), 1)
            if "folder-path" in written
        )
        where = f"{path}:{line}:{column}"  # the key that named the folder, not the step's first line
        assert (
            user.description == f"get-files: missing folder: {tmp_path / 'nope'} (from config.folder-path at {where})"
        )
        assert user.metadata["exo/source"].value == where
        assert user.metadata["exo/cause"].value == "missing-file"
        assert user.metadata["exo/step"].value == "files (Find files)"
        assert user.metadata["exo/satellite"].value.startswith("satellite/exospherehost/get-files@")
        assert user.metadata["exo/error-kind"].value == "permanent"
        fields = failure_fields(instance, cluster, result.run_id, "files")
        assert fields["error"].startswith("Find files (`files`): get-files: missing folder: ")


@pytest.mark.slow
def test_a_busy_service_is_retried_and_the_failure_names_the_last_cause(tmp_path, data_dir):
    with http_server() as server, dg.instance_for_test() as instance:
        server.status["/busy"] = 503
        cluster = parse_cluster(FLAKY.format(url=server.url), str(tmp_path / "flaky.yaml"))
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not result.success
        assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 2
        assert len(server.to("/busy")) == 3
        fields = failure_fields(instance, cluster, result.run_id, "call")
        assert "Exceeded max_retries" not in fields["error"]
        assert fields["error"].startswith("Call the service (`call`): ") and "503" in fields["error"]


BAD_SQL = """\
version: 0.0.1b
cluster:
  identifier: t/bad-sql
  retries: 3
  retry: {delay: 0}
  satellites:
    - name: Check stock
      uses: satellite/exospherehost/sql
      identifier: check
      config: {query: "select error('stock count is negative') as x"}
"""


@pytest.mark.slow
def test_a_query_that_fails_when_its_output_is_written_fails_at_once_too(tmp_path, data_dir):
    """The sql satellite returns a lazy relation, computed while the IO manager writes it."""
    path = tmp_path / "bad.yaml"
    cluster = parse_cluster(BAD_SQL, str(path))
    with dg.instance_for_test() as instance:
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not result.success and _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
        fields = failure_fields(instance, cluster, result.run_id, "check")
        assert fields["error"].startswith("Check stock (`check`): ") and "stock count is negative" in fields["error"]
