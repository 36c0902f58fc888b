"""A step's `timeout:` stops an attempt that runs too long, with a clear message, and its retry policy applies."""

from __future__ import annotations

import time

import dagster as dg
import polars as pl
import pytest

from exo_dagster import SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.compile.failure_section import failure_fields
from exo_dagster.catalog.registry import default_registry

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
