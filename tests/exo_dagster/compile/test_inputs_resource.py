"""Run inputs compiled: the typed run-config schema the launchpad shows, what steps resolve (in SQL as values,
never as SQL text), a trigger list's schedules with their own inputs, and the run guard's check."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from exo_dagster import compile_cluster, parse_cluster
from exo_dagster.compile import inputs_resource

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/sales
  inputs:
    region: {type: string, default: west, description: Sales region}
    since:  {type: date, required: true}
    top:    {type: int, default: 10}
    tier:   {type: enum, values: [gold, silver], default: gold}
    ids:    {type: list, default: [1, 2]}
    note:   {type: string}
  trigger:
    - cron: "0 6 * * *"
      inputs: {since: 2026-11-01}
    - cron: "30 18 * * 1-5"
      timezone: Europe/Berlin
      inputs: {since: 2026-11-02, region: east, tier: silver}
  satellites:
    - name: Query
      identifier: q
      uses: satellite/exospherehost/sql
      config:
        query: >-
          select ${{ inputs.region }} as region, cast(${{ inputs.since }} as date) as since,
          ${{ inputs.top }} + 1 as top1, ${{ inputs.tier }} as tier, 2 in (${{ inputs.ids }}) as has2,
          ${{ inputs.note }} is null as no_note
"""


@pytest.fixture
def defs():
    return compile_cluster(parse_cluster(CLUSTER, "sales.yaml"))


def _run(defs, tmp_path, monkeypatch, config: dict):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    job = defs.resolve_job_def("acme__sales")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
        frame = pl.read_parquet(tmp_path / "exo" / "outputs" / "acme__sales" / "q.parquet") if result.success else None
        return result, frame


def test_the_launchpad_schema_is_typed_with_defaults_and_descriptions(defs):
    job = defs.resolve_job_def("acme__sales")
    resources = job.run_config_schema.config_type.fields["resources"].config_type.fields
    fields = resources["inputs__acme__sales"].config_type.fields["config"].config_type.fields
    assert fields["since"].is_required and not fields["region"].is_required
    assert fields["region"].default_value == "west" and fields["top"].default_value == 10
    assert fields["top"].config_type.given_name == "Int" and fields["region"].config_type.given_name == "String"
    assert [v.config_value for v in fields["tier"].config_type.enum_values] == ["gold", "silver"]
    assert "Sales region" in fields["region"].description and "YYYY-MM-DD" in fields["since"].description


@pytest.mark.slow
def test_steps_resolve_inputs_as_values(defs, tmp_path, monkeypatch):
    hostile = "x'); drop table q; select ('"
    result, frame = _run(
        defs,
        tmp_path,
        monkeypatch,
        inputs_resource.run_config(
            parse_cluster(CLUSTER, "sales.yaml"),
            {"since": "2026-11-05", "region": hostile, "ids": "2,3", "tier": "silver"},
        ),
    )
    assert result.success
    assert frame.to_dicts() == [
        {"region": hostile, "since": dt.date(2026, 11, 5), "top1": 11, "tier": "silver", "has2": True, "no_note": True}
    ]


@pytest.mark.slow
def test_missing_or_ill_typed_inputs_stop_the_run_before_any_step(defs, tmp_path, monkeypatch):
    with pytest.raises(dg.DagsterInvalidConfigError, match="since"):
        _run(defs, tmp_path, monkeypatch, {})
    result, _ = _run(defs, tmp_path, monkeypatch, {"resources": {"inputs__acme__sales": {"config": {"since": "soon"}}}})
    assert not result.success
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    assert 'input `since` must be a date written YYYY-MM-DD, got "soon"' in str(failure.event_specific_data.error)


def test_each_trigger_is_a_schedule_with_its_own_inputs(defs):
    schedules = {s.name: s for s in defs.schedules}
    assert sorted(schedules) == ["acme__sales__cron", "acme__sales__cron_2"]
    assert schedules["acme__sales__cron_2"].execution_timezone == "Europe/Berlin"
    configs = {}
    for name, schedule in schedules.items():
        with dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 30, 6, tzinfo=dt.UTC)) as context:
            [request] = schedule.evaluate_tick(context).run_requests
        configs[name] = request.run_config["resources"]["inputs__acme__sales"]["config"]
    assert configs == {
        "acme__sales__cron": {"since": "2026-11-01"},
        "acme__sales__cron_2": {"since": "2026-11-02", "region": "east", "tier": "silver"},
    }


def test_a_cluster_without_inputs_needs_no_run_config():
    defs = compile_cluster(
        parse_cluster(
            CLUSTER.split("  inputs:")[0]
            + """\
  trigger: {cron: "0 * * * *"}
  satellites:
    - {name: One, uses: satellite/exospherehost/sql, config: {query: "select 1 as x"}}
""",
            "plain.yaml",
        )
    )
    job = defs.resolve_job_def("acme__sales")
    assert "resources" not in job.run_config_schema.config_type.fields or not any(
        k.startswith("inputs__") for k in job.run_config_schema.config_type.fields["resources"].config_type.fields
    )
    [schedule] = defs.schedules
    assert schedule.name == "acme__sales__cron"


@pytest.mark.slow
def test_enum_choices_of_any_scalar_type_are_offered_by_their_text(tmp_path, monkeypatch):
    """1 and true are two choices (Python counts them equal), text with spaces and quotes is a choice too."""
    cluster = parse_cluster(
        CLUSTER.split("  inputs:")[0]
        + """\
  inputs:
    tier: {type: enum, values: [1, true, "north east", "o'x"], default: "north east"}
  satellites:
    - {name: Q, uses: satellite/exospherehost/sql, identifier: q, config: {query: "select ${{ inputs.tier }} as tier"}}
""",
        "enum.yaml",
    )
    defs = compile_cluster(cluster)
    job = defs.resolve_job_def("acme__sales")
    resources = job.run_config_schema.config_type.fields["resources"].config_type.fields
    tier = resources["inputs__acme__sales"].config_type.fields["config"].config_type.fields["tier"]
    assert [v.config_value for v in tier.config_type.enum_values] == ["1", "true", "north east", "o'x"]
    for given, stored in (("true", True), ("1", 1), ("o'x", "o'x")):
        result, frame = _run(defs, tmp_path, monkeypatch, inputs_resource.run_config(cluster, {"tier": given}))
        assert result.success and frame["tier"].to_list() == [stored], (given, frame)
