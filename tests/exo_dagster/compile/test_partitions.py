"""`partitions:`: every step's asset is partitioned, each partition stored in its own file, one DuckDB view over all,
`${{ partition.* }}` from the run's partition, partitioned schedules, per-partition row cache."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.runtime.step_compute import row_identity
from exo_dagster.spec_dagster import partitions
from exo_dagster.storage.io_manager import partition_file_stem
from exo_dagster.storage.views_query import query

DAILY = """\
version: 0.0.1b
cluster:
  identifier: test/days
  partitions:
    daily: {start: 2026-11-01, end: "2026-11-08", timezone: UTC}
  satellites:
    - name: Day
      uses: satellite/exospherehost/sql
      identifier: day
      config:
        query: >-
          select ${{ partition.key }} as day, ${{ partition.start }} as s, ${{ partition.end }} as e,
          cast(${{ env.FACTOR }} as int) as factor
    - name: Total
      uses: satellite/exospherehost/sql
      identifier: total
      config: {query: "select day, factor * 10 as value from day"}
"""
DAYS = [f"2026-11-0{d}" for d in range(1, 8)]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    for name in ("EXO_OUTPUTS", "EXO_CATALOG", "EXO_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as inst:
        yield inst


def _run(cluster, instance, key: str) -> dg.ExecuteInProcessResult:
    defs = compile_cluster(cluster)
    return defs.resolve_job_def(cluster.job_name).execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False
    )


def test_every_step_and_the_job_are_partitioned():
    cluster = parse_cluster(DAILY, "days.yaml", registry=builtin_registry())
    defs = compile_cluster(cluster)
    job = defs.resolve_job_def(cluster.job_name)
    assert job.partitions_def.get_partition_keys() == DAYS
    graph = defs.resolve_asset_graph()
    for name in ("day", "total"):
        assert graph.get(dg.AssetKey(["test", "days", name])).partitions_def == job.partitions_def


@pytest.mark.slow
def test_seven_day_backfill_one_view_and_a_rerun_replaces_one_day(data_dir, instance, monkeypatch):
    monkeypatch.setenv("FACTOR", "1")
    cluster = parse_cluster(DAILY, "days.yaml", registry=builtin_registry())
    for day in DAYS:
        assert _run(cluster, instance, day).success
    outputs = data_dir / "outputs" / "test__days"
    assert sorted(p.name for p in (outputs / "day").iterdir()) == [f"{d}.parquet" for d in DAYS]
    assert sorted(p.name for p in (outputs / "total").iterdir()) == [f"{d}.parquet" for d in DAYS]
    assert not (outputs / "total.parquet").exists()
    first = pl.read_parquet(outputs / "day" / "2026-11-03.parquet")
    assert first.row(0) == ("2026-11-03", "2026-11-03", "2026-11-04", 1)  # each step read its own partition

    catalog = str(data_dir / "catalog.duckdb")
    result = query("select day, value, partition from days.total order by day", catalog)
    assert result.rows == [(d, 10, d) for d in DAYS]  # ONE view over the seven partition files

    before = {p.name: p.stat().st_mtime_ns for p in (outputs / "total").iterdir()}
    monkeypatch.setenv("FACTOR", "7")
    assert _run(cluster, instance, "2026-11-03").success
    after = {p.name: p.stat().st_mtime_ns for p in (outputs / "total").iterdir()}
    assert [name for name in after if after[name] != before[name]] == ["2026-11-03.parquet"]
    result = query("select day, value from days.total order by day", catalog)
    assert result.rows == [(d, 70 if d == "2026-11-03" else 10) for d in DAYS]


def test_a_run_without_a_partition_key_fails_with_a_plain_message(data_dir, instance, monkeypatch):
    monkeypatch.setenv("FACTOR", "1")
    cluster = parse_cluster(DAILY, "days.yaml", registry=builtin_registry())
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "is partitioned (daily) and this run has no partition key" in failure.step_failure_data.error.message
    assert not (data_dir / "outputs" / "test__days" / "day.parquet").exists()


STATIC = """\
version: 0.0.1b
cluster:
  identifier: test/regions
  partitions:
    static: [eu, us, "a:b c.d"]
  satellites:
    - name: Region
      uses: satellite/exospherehost/sql
      identifier: region
      config: {query: "select ${{ partition.key }} as region"}
    - name: Tagged
      uses: satellite/test/tag
      identifier: tagged
      fan-out: {chunk-rows: 1}
      input: {word: "$${{ satellites.region.output.region }}"}
"""


class TagConfig(SatelliteConfig):
    suffix: str = "!"


CALLS: list[str] = []


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/tag", config=TagConfig, registry=extra)
    def tag(ctx: StepContext, config: TagConfig):
        def one(row: dict, key: str) -> dict:
            CALLS.append(row["word"])
            return {"tagged": "x" + config.suffix}  # the same for every partition: only the cache key tells them apart

        return ctx.map_rows(one)

    return builtin_registry().merged(extra)


@pytest.mark.slow
def test_static_partitions_with_a_fanned_out_step_and_safe_file_names(data_dir, instance):
    cluster = parse_cluster(STATIC, "regions.yaml", registry=_registry())
    defs = compile_cluster(cluster)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["test", "regions", "tagged"])).partitions_def.get_partition_keys() == [
        "eu",
        "us",
        "a:b c.d",
    ]
    for key in ("eu", "a:b c.d"):
        assert _run(cluster, instance, key).success
    folder = data_dir / "outputs" / "test__regions" / "region"
    assert sorted(p.name for p in folder.iterdir()) == ["a%3Ab%20c%2Ed.parquet", "eu.parquet"]
    assert partition_file_stem("2026-11-01-05:00") == "2026-11-01-05%3A00"
    rows = query("select region, partition from regions.region order by region", str(data_dir / "catalog.duckdb")).rows
    assert rows == [("a:b c.d", "a:b c.d"), ("eu", "eu")]
    tagged = query(
        "select tagged, partition from regions.tagged order by partition", str(data_dir / "catalog.duckdb")
    ).rows
    assert tagged == [("x!", "a:b c.d"), ("x!", "eu")]


@pytest.mark.slow
def test_row_cache_is_keyed_per_partition(data_dir, instance):
    """The same row in two partitions is computed twice (once each); re-running a partition takes it from the cache."""
    text = STATIC.replace("select ${{ partition.key }} as region", "select 'same' as region").replace(
        "      fan-out: {chunk-rows: 1}\n", ""
    )
    cluster = parse_cluster(text, "regions.yaml", registry=_registry())
    CALLS.clear()
    assert _run(cluster, instance, "eu").success and _run(cluster, instance, "us").success
    assert CALLS == ["same", "same"]
    assert _run(cluster, instance, "eu").success
    assert CALLS == ["same", "same"]  # eu's row was cached for eu
    config = {"suffix": "!"}
    assert row_identity(config, None) == config
    assert row_identity(config, {"partition": {"key": "eu"}}) != row_identity(config, {"partition": {"key": "us"}})


HOURLY = """\
version: 0.0.1b
cluster:
  identifier: test/hours
  partitions:
    hourly: {start: "2026-11-01T00:00", timezone: Europe/Berlin}
  satellites:
    - name: Hour
      uses: satellite/exospherehost/sql
      identifier: hour
      config: {query: "select ${{ partition.key }} as k, ${{ partition.start }} as s, ${{ partition.end }} as e"}
"""


def test_hourly_keys_and_iso_datetimes(data_dir, instance):
    cluster = parse_cluster(HOURLY, "hours.yaml", registry=builtin_registry())
    definition = partitions.partitions_def(cluster)
    keys = definition.get_partition_keys(current_time=dt.datetime(2026, 11, 1, 3, 30, tzinfo=dt.UTC))
    assert keys[:2] == ["2026-11-01-00:00", "2026-11-01-01:00"]
    assert partitions.partition_fields(cluster, definition, "2026-11-01-05:00") == {
        "key": "2026-11-01-05:00",
        "start": "2026-11-01T05:00:00+01:00",
        "end": "2026-11-01T06:00:00+01:00",
    }
    assert _run(cluster, instance, "2026-11-01-05:00").success
    stored = pl.read_parquet(data_dir / "outputs" / "test__hours" / "hour" / "2026-11-01-05%3A00.parquet")
    assert stored.row(0) == ("2026-11-01-05:00", "2026-11-01T05:00:00+01:00", "2026-11-01T06:00:00+01:00")


def test_keys_for_exo_run_ranges_and_unknown_keys():
    cluster = parse_cluster(DAILY, "days.yaml", registry=builtin_registry())
    assert partitions.keys_for(cluster, ["2026-11-02...2026-11-04", "2026-11-07"]) == DAYS[1:4] + ["2026-11-07"]
    with pytest.raises(partitions.UnknownPartition, match=r"its keys look like `2026-11-01` \.\.\. `2026-11-07`"):
        partitions.keys_for(cluster, ["2026-12-01"])
    with pytest.raises(partitions.UnknownPartition, match="is not a range"):
        partitions.keys_for(cluster, ["2026-11-05...2026-11-02"])


def _tick(defs: dg.Definitions, name: str, when: dt.datetime) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as context:
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def test_cron_on_a_daily_cluster_runs_the_latest_complete_day():
    text = DAILY.replace('end: "2026-11-08", ', "").replace(
        "  partitions:", '  trigger: {cron: "0 6 * * *"}\n  partitions:'
    )
    cluster = parse_cluster(text, "days.yaml", registry=builtin_registry())
    defs = compile_cluster(cluster)
    [request] = _tick(defs, "test__days__cron", dt.datetime(2026, 11, 5, 6, tzinfo=dt.UTC))
    assert request.partition_key == "2026-11-04"
    assert request.run_key == "2026-11-04@2026-11-05T06:00:00+00:00"
    assert _tick(defs, "test__days__cron", dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)) == []  # nothing complete yet


def test_cron_on_a_static_cluster_runs_every_key_per_tick():
    text = STATIC.replace("  partitions:", '  trigger: {cron: "0 * * * *"}\n  partitions:')
    cluster = parse_cluster(text, "regions.yaml", registry=_registry())
    defs = compile_cluster(cluster)
    requests = _tick(defs, "test__regions__cron", dt.datetime(2026, 11, 5, 6, tzinfo=dt.UTC))
    assert [r.partition_key for r in requests] == ["eu", "us", "a:b c.d"]
    assert len({r.run_key for r in requests}) == 3 and all(
        r.run_key.endswith("@2026-11-05T06:00:00+00:00") for r in requests
    )


@pytest.mark.slow
def test_each_cron_trigger_of_a_list_runs_the_ticks_partition_with_its_inputs(data_dir, instance):
    text = (
        DAILY.replace('end: "2026-11-08", ', "")
        .replace(
            "  partitions:",
            """\
  inputs:
    region: {type: string, default: eu}
  trigger:
    - {cron: "0 6 * * *"}
    - {cron: "0 18 * * *", timezone: Europe/Berlin, inputs: {region: us}}
  partitions:""",
        )
        .replace("cast(${{ env.FACTOR }} as int) as factor", "${{ inputs.region }} as region, 1 as factor")
    )
    cluster = parse_cluster(text, "days.yaml", registry=builtin_registry())
    defs = compile_cluster(cluster)
    [morning] = _tick(defs, "test__days__cron", dt.datetime(2026, 11, 5, 6, tzinfo=dt.UTC))
    [evening] = _tick(defs, "test__days__cron_2", dt.datetime(2026, 11, 5, 17, tzinfo=dt.UTC))
    assert (morning.partition_key, evening.partition_key) == ("2026-11-04", "2026-11-04")
    result = defs.resolve_job_def(cluster.job_name).execute_in_process(
        instance=instance, partition_key=evening.partition_key, run_config=evening.run_config
    )
    assert result.success
    stored = pl.read_parquet(data_dir / "outputs" / "test__days" / "day" / "2026-11-04.parquet")
    assert stored.select("day", "region").row(0) == ("2026-11-04", "us")
