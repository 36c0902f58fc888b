"""The `failure` section in-process: the run-failure sensor picks the failure, the failure job runs
the satellites with `failure.*` and the cluster's stored outputs. (The daemon runs the same chain
for real in tests/definitions/test_daemon.py.)"""

from __future__ import annotations

import dagster as dg
import pytest

from exo_dagster import compile_cluster, parse_cluster
from exo_dagster.sections import failure
from exo_dagster.sections.failure import RUN_ID_TAG, STEP_TAG, failure_job_name
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/fragile
  satellites:
    - name: Numbers
      uses: satellite/exospherehost/sql
      config: {{query: "select * from range(3) t(n)"}}
    - name: Check
      uses: satellite/exospherehost/sql
      identifier: check
      config: {{query: "{check}"}}
    - name: Notify
      uses: satellite/exospherehost/call-webhook
      identifier: notify
      on-row-error: {on_row_error}{fan_out}
      config: {{url: "{url}/rows", mode: per-row}}
      input: {{n: "$${{{{ satellites.numbers.output.n }}}}"}}
  failure:
    from: {start}
    satellites:
      - name: Alert
        uses: satellite/exospherehost/send-alert
        config:
          format: slack
          url: {url}/alert
          title: "cluster ${{{{ cluster.identifier }}}} failed"
          text: "${{{{ failure.step }}}} failed in run ${{{{ failure.run-id }}}}: ${{{{ failure.error }}}}"
          details: {{rows: "${{{{ failure.rows }}}}"}}
      - name: Dump
        uses: satellite/exospherehost/call-webhook
        config: {{url: "{url}/dump", mode: per-batch}}
        input: {{table: "${{{{ satellites.numbers.output }}}}"}}
"""


def _setup(tmp_path, url, *, check="select 1 as ok", start="check", on_row_error="collect", fan_out=""):
    text = CLUSTER.format(url=url, check=check, start=start, on_row_error=on_row_error, fan_out=fan_out)
    cluster = parse_cluster(text, str(tmp_path / "fragile.yaml"))
    return cluster, compile_cluster(cluster)


def _failure_tick(defs, cluster, instance, result):
    run = instance.get_run_by_id(result.run_id)
    [event] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    sensor = next(s for s in defs.sensors if s.name == f"{cluster.job_name}__on_failure")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=event, dagster_instance=instance, dagster_run=run
    ).for_run_failure()
    return sensor(context)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))


def test_a_failing_step_runs_the_failure_satellites_with_its_context(tmp_path, data_dir):
    with http_server() as server, dg.instance_for_test() as instance:
        cluster, defs = _setup(tmp_path, server.url, check="select error('stock count is negative') as x")
        sensor = next(s for s in defs.sensors if s.name == "t__fragile__on_failure")
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.tags["exo/cluster"] == "t/fragile"
        result = defs.resolve_job_def(cluster.job_name).execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        request = _failure_tick(defs, cluster, instance, result)
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == f"failure:{result.run_id}"
        assert request.tags[RUN_ID_TAG] == result.run_id and request.tags[STEP_TAG] == "check"
        failure_job = defs.resolve_job_def(failure_job_name(cluster))
        handled = failure_job.execute_in_process(instance=instance, tags=request.tags)
        assert handled.success
        [alert] = server.to("/alert")
        body = alert.json()
        assert body["blocks"][0]["text"]["text"] == "cluster t/fragile failed"
        text = body["blocks"][1]["text"]["text"]
        assert text.startswith(f"check failed in run {result.run_id}: ")
        assert "stock count is negative" in text
        [dump] = server.to("/dump")  # the failure satellites can read the cluster's stored outputs
        assert [r["n"] for r in dump.json()] == [0, 1, 2]
        context = handled.output_for_node(failure.context_op_name(cluster)).to_dicts()[0]
        assert context["step"] == "check" and "stock count is negative" in context["error"]


@pytest.mark.parametrize("fan_out", ["", "\n      fan-out: {chunk-rows: 2}"], ids=["one-op", "fanned-out"])
def test_per_row_errors_reach_failure_rows(tmp_path, data_dir, fan_out):
    with http_server() as server, dg.instance_for_test() as instance:
        server.status["/rows"] = 500
        cluster, defs = _setup(tmp_path, server.url, start="notify", on_row_error="fail", fan_out=fan_out)
        result = defs.resolve_job_def(cluster.job_name).execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        request = _failure_tick(defs, cluster, instance, result)
        assert request.tags[STEP_TAG] == "notify"
        defs.resolve_job_def(failure_job_name(cluster)).execute_in_process(instance=instance, tags=request.tags)
        body = server.to("/alert")[0].json()
        rows_field = body["blocks"][2]["fields"][0]["text"]
        assert rows_field.startswith("*rows*\nrow ") and "HttpStatusError" in rows_field and "500" in rows_field


def test_failures_before_from_and_other_runs_are_ignored(tmp_path, data_dir):
    with http_server() as server, dg.instance_for_test() as instance:
        cluster, defs = _setup(tmp_path, server.url, check="select error('too early') as x", start="notify")
        result = defs.resolve_job_def(cluster.job_name).execute_in_process(instance=instance, raise_on_error=False)
        skipped = _failure_tick(defs, cluster, instance, result)
        assert isinstance(skipped, dg.SkipReason) and "outside the failure section" in skipped.skip_message
        # the failure job's own failure never triggers it again (no loop)
        failing = defs.resolve_job_def(failure_job_name(cluster)).execute_in_process(
            instance=instance, raise_on_error=False, tags={RUN_ID_TAG: "no-such-run", STEP_TAG: "check"}
        )
        assert not failing.success
        assert isinstance(_failure_tick(defs, cluster, instance, failing), dg.SkipReason)
        assert server.to("/alert") == []
