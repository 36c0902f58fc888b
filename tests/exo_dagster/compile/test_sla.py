"""`sla` -> max runtime tag and a freshness policy on every asset of the cluster (the daemon test
shows a breach in the UI)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from exo_dagster import compile_cluster, parse_cluster
from exo_dagster.compile.sla import freshness_window, longest_cron_gap

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/sla
  {sla}
  {trigger}
  satellites:
    - {{name: A, uses: satellite/exospherehost/sql, config: {{query: "select 1 as a"}}}}
    - {{name: B, uses: satellite/exospherehost/sql, config: {{query: "select 2 as b"}}}}
"""


def _defs(tmp_path, sla: str = "", trigger: str = ""):
    cluster = parse_cluster(CLUSTER.format(sla=sla, trigger=trigger), str(tmp_path / "sla.yaml"))
    return cluster, compile_cluster(cluster)


def _policies(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    return {"/".join(k.path): graph.get(k).freshness_policy for k in graph.get_all_asset_keys()}


def test_sla_without_schedule_is_a_window_of_the_sla(tmp_path):
    cluster, defs = _defs(tmp_path, "sla: 12h", "trigger: {files: {path: in}}")
    assert defs.resolve_job_def(cluster.job_name).tags["dagster/max_runtime"] == str(12 * 3600)
    policies = _policies(defs)
    assert set(policies) == {"t/sla/a", "t/sla/b"}
    for policy in policies.values():
        assert isinstance(policy, dg.FreshnessPolicy)
        assert policy.fail_window.to_timedelta() == timedelta(hours=12) and policy.warn_window is None


def test_scheduled_cluster_allows_the_longest_gap_plus_the_sla(tmp_path):
    _, defs = _defs(tmp_path, "sla: 6h", 'trigger: {cron: "0 9 * * 1-5", timezone: Europe/Berlin}')
    policy = next(iter(_policies(defs).values()))
    assert policy.fail_window.to_timedelta() == timedelta(days=3, hours=6)  # Friday 9:00 to Monday 9:00, plus 6h
    assert policy.warn_window.to_timedelta() == timedelta(days=3)
    assert longest_cron_gap("*/15 * * * *") == timedelta(minutes=15)


def test_no_sla_no_policy(tmp_path):
    cluster, defs = _defs(tmp_path)
    assert set(_policies(defs).values()) == {None}
    assert "dagster/max_runtime" not in defs.resolve_job_def(cluster.job_name).tags
    assert freshness_window(cluster.spec) is None


def test_fanned_out_steps_get_the_policy_too(tmp_path):
    text = (
        CLUSTER.format(sla="sla: 24h", trigger="")
        + """\
    - name: C
      uses: satellite/exospherehost/call-webhook
      fan-out: {chunk-rows: 10}
      config: {url: "http://127.0.0.1:9/unused"}
      input: {a: "$${{ satellites.a.output.a }}"}
"""
    )
    cluster = parse_cluster(text, str(tmp_path / "fan.yaml"))
    policies = _policies(compile_cluster(cluster))
    assert policies["t/sla/c"].fail_window.to_timedelta() == timedelta(hours=24)


@pytest.mark.parametrize(
    "sla, seconds", [("6h", 21600), ("12h", 43200), ("24h", 86400), ("5s", 5), ("90m", 5400), ("45", 45)]
)
def test_sla_accepts_any_duration_and_sets_the_max_runtime_tag(tmp_path, sla, seconds):
    cluster = parse_cluster(CLUSTER.format(sla=f"sla: {sla}", trigger=""), str(tmp_path / "c.yaml"))
    assert cluster.spec.sla_seconds == seconds
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    assert job.tags["dagster/max_runtime"] == str(seconds)


@pytest.mark.parametrize("sla, message", [("0", "must be longer than 0 seconds"), ("soon", "is not a duration")])
def test_a_bad_sla_is_a_located_spec_error(tmp_path, sla, message):
    from exo_dagster.spec.errors import SpecError

    with pytest.raises(SpecError) as error:
        parse_cluster(CLUSTER.format(sla=f"sla: {sla}", trigger=""), str(tmp_path / "c.yaml"))
    assert "c.yaml:4:8: error: `sla`: " in str(error.value) and message in str(error.value)
