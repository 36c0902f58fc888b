"""A step's `timeout:` stops an attempt that runs too long, with a clear message, and its retry policy applies."""

from __future__ import annotations

import time

import dagster as dg
import polars as pl
import pytest

from exo_dagster import SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import default_registry
from exo_dagster.sections.failure import failure_fields

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

if "satellite/test/nap" not in default_registry().ids():

    class NapConfig(SatelliteConfig):
        seconds: float = 0

    @satellite("satellite/test/nap", config=NapConfig)
    def nap(ctx: StepContext, config: NapConfig):
        """Sleeps, then returns one row."""
        time.sleep(config.seconds)
        return pl.DataFrame({"slept": [config.seconds]})


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/slow
  retries: 1
  retry: {{delay: 0}}
  satellites:
    - name: Nap
      uses: satellite/test/nap
      identifier: nap
      timeout: {timeout}
      config: {{seconds: {seconds}}}
"""


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))


def _run(tmp_path, instance, timeout, seconds):
    cluster = parse_cluster(CLUSTER.format(timeout=timeout, seconds=seconds), str(tmp_path / "slow.yaml"))
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    return cluster, job.execute_in_process(instance=instance, raise_on_error=False)


def test_a_step_past_its_timeout_fails_clearly_after_its_retries(tmp_path, data_dir):
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        cluster, result = _run(tmp_path, instance, "500ms", 30)
        assert time.monotonic() - started < 20  # two attempts of 0.5 s, not 30 s
        assert not result.success
        retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
        assert len(retries) == 1
        fields = failure_fields(instance, cluster, result.run_id, "nap")
        assert fields["error"] == "Nap (`nap`): step `nap` (Nap) timed out after 0.5s (its `timeout:` is 500ms)"


def test_a_step_within_its_timeout_succeeds(tmp_path, data_dir):
    with dg.instance_for_test() as instance:
        _, result = _run(tmp_path, instance, "10s", 0.1)
        assert result.success


def test_timeout_must_be_a_duration(tmp_path):
    from exo_dagster.spec.errors import SpecError

    with pytest.raises(SpecError) as error:
        parse_cluster(CLUSTER.format(timeout="soon", seconds=1), str(tmp_path / "bad.yaml"))
    assert "not a duration" in str(error.value)


RUNAWAY = """\
version: 0.0.1b
cluster:
  identifier: t/runaway
  retries: 0
  satellites:
    - name: Runaway
      uses: satellite/exospherehost/sql
      identifier: runaway
      timeout: 2s
      config: {query: "select sum(a.range * b.range) as s from range(1000000) a, range(1000000) b", threads: 4}
"""


def test_a_runaway_sql_query_ends_within_seconds_of_its_timeout(tmp_path, data_dir):
    """The step returns a lazy relation at once; the query runs while its output is written, on 4 DuckDB threads,
    and would take hours: the limit covers the writing, and DuckDB is interrupted (issue 21)."""
    cluster = parse_cluster(RUNAWAY, str(tmp_path / "runaway.yaml"))
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        fields = failure_fields(instance, cluster, result.run_id, "runaway")
        assert fields["error"] == (
            "Runaway (`runaway`): step `runaway` (Runaway) timed out after 2s (its `timeout:` is 2s)"
        )
        times = {
            e.dagster_event.event_type: e.timestamp
            for e in instance.all_logs(result.run_id)
            if e.dagster_event
            and e.dagster_event.event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_FAILURE)
        }
        late = times[dg.DagsterEventType.STEP_FAILURE] - times[dg.DagsterEventType.STEP_START] - 2.0
        print(f"step failed {late:.2f}s after its 2s timeout")  # the figure for the report (pytest -s)
        assert late < 3.0, f"the step ended {late:.1f}s after its limit"  # measured: about 0.1 s
