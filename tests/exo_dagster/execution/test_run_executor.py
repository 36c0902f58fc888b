"""exo's executor wrapper on exo's local executor: a run past its SLA is stopped (its step processes
too) and fails with "SLA exceeded"; every run says which executor ran it."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from exo_dagster.sections.failure import run_failure_text
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/late
  executor: local
  sla: {sla}
  satellites:
    - name: Wait for the service
      uses: satellite/exospherehost/call-webhook
      identifier: wait
      config: {{url: "{url}/slow", mode: per-batch, body: {{ping: 1}}, timeout: 120}}
"""


def _execute(tmp_path, url: str, sla: str, instance):
    path = tmp_path / "late.yaml"
    path.write_text(CLUSTER.format(url=url, sla=sla))
    job = dg.build_reconstructable_job("exo_dagster.cli", "cluster_job", reconstructable_args=(str(path),))
    started = time.monotonic()
    with dg.execute_job(job, instance=instance, raise_on_error=False) as result:
        return result.run_id, result.success, time.monotonic() - started


def test_a_local_run_past_its_sla_is_stopped_and_fails_with_sla_exceeded(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    with http_server() as slow, dg.instance_for_test() as instance:
        slow.delay = 60
        run_id, success, took = _execute(tmp_path, slow.url, "3s", instance)
        assert not success and took < 45  # stopped at its SLA, not after the service's 60 s
        run = instance.get_run_by_id(run_id)
        assert run.tags["exo/executor"] == "local" and run.tags["dagster/max_runtime"] == "3"
        assert run_failure_text(instance, run_id).startswith("SLA exceeded: the run took longer than its sla of 3s")
        steps = {
            r.event_log_entry.dagster_event.event_type
            for r in instance.get_records_for_run(run_id).records
            if r.event_log_entry.dagster_event and r.event_log_entry.step_key
        }
        assert dg.DagsterEventType.STEP_SUCCESS not in steps and dg.DagsterEventType.STEP_FAILURE in steps


def test_a_run_within_its_sla_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    with http_server() as fast, dg.instance_for_test() as instance:
        run_id, success, _ = _execute(tmp_path, fast.url, "5m", instance)
        assert success and instance.get_run_by_id(run_id).tags["exo/executor"] == "local"
        assert len(fast.to("/slow")) == 1
