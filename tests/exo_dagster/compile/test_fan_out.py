"""`fan-out: {chunk-rows: N}`: a step's rows split over separate chunk ops, merged back in order."""

from __future__ import annotations

import os

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, SpecError, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry


class TagConfig(SatelliteConfig):
    suffix: str = "!"


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/tag", config=TagConfig, registry=extra)
    def tag(ctx: StepContext, config: TagConfig):
        rows = ctx.rows.collect()
        return rows.with_columns((pl.col("word") + config.suffix).alias("tagged"), pl.lit(os.getpid()).alias("pid"))

    return builtin_registry().merged(extra)


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/chunks
  satellites:
    - name: Words
      uses: satellite/exospherehost/sql
      identifier: words
      config: {query: "select 'w' || i as word, i from range(10) t(i) order by i"}
    - name: Tag
      uses: satellite/test/tag
      identifier: tagged
      fan-out: {chunk-rows: 3}
      input: {word: "$${{ satellites.words.output.word }}"}
    - name: Count
      uses: satellite/exospherehost/sql
      identifier: counted
      config: {query: "select count(*) as n from tagged"}
"""


def test_chunks_run_as_separate_ops_and_merge_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path))
    cluster = parse_cluster(CLUSTER, "chunks.yaml", registry=_registry())
    defs = compile_cluster(cluster)
    result = defs.resolve_job_def(cluster.job_name).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    chunk_steps = sorted(
        e.step_key
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_SUCCESS and "__chunk[" in e.step_key
    )
    assert chunk_steps == [f"tagged__test__chunks.tagged__test__chunks__chunk[c{i}]" for i in range(4)]
    outputs = tmp_path / "outputs" / "test__chunks"
    assert (outputs / "tagged.parquet.ref.json").exists()  # the merged output references the chunk files
    assert pl.read_parquet(outputs / "counted.parquet")["n"].to_list() == [10]
    import json

    ref = json.loads((outputs / "tagged.parquet.ref.json").read_text())
    merged = pl.read_parquet(ref["paths"])
    assert merged["tagged"].to_list() == [f"w{i}!" for i in range(10)]
    assert len(ref["paths"]) == 4


def test_fan_out_needs_per_row_input(tmp_path):
    text = CLUSTER.replace('      input: {word: "$${{ satellites.words.output.word }}"}\n', "")
    with pytest.raises(SpecError, match="no per-row input") as info:
        parse_cluster(text, "chunks.yaml", registry=_registry())
    assert (info.value.errors[0].location.line, info.value.errors[0].location.column) == (12, 7)


def test_a_fanned_out_step_has_its_owners_tags_and_name_led_description():
    text = CLUSTER.replace(
        "  satellites:\n", '  owners: ["team:words"]\n  tags: {domain: text}\n  satellites:\n', 1
    ).replace("      fan-out: {chunk-rows: 3}\n", "      fan-out: {chunk-rows: 3}\n      tags: {tier: gold}\n")
    cluster = parse_cluster(text, "c.yaml", registry=_registry())
    key = dg.AssetKey(["test", "chunks", "tagged"])
    spec = compile_cluster(cluster).resolve_assets_def(key).specs_by_key[key]
    assert list(spec.owners) == ["team:words"] and spec.tags["domain"] == "text" and spec.tags["tier"] == "gold"
    assert spec.description.split("\n\n")[0] == "Tag"


@pytest.mark.slow
def test_a_newer_runs_merge_removes_the_older_runs_chunk_files(tmp_path, monkeypatch):
    """The merged output references its run's chunk files: a later run's merge makes the earlier run's folder
    garbage, removed once that run is over; a folder of a run still in progress, or unknown here, stays."""
    import json

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    cluster = parse_cluster(CLUSTER, "chunks.yaml", registry=_registry())
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    chunks = tmp_path / "exo" / "chunks" / "test" / "chunks" / "tagged"
    ref = tmp_path / "exo" / "outputs" / "test__chunks" / "tagged.parquet.ref.json"
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(instance=instance)
        assert first.success and sorted(p.name for p in chunks.iterdir()) == [first.run_id]
        # a run still going (its downstream steps may read its chunks) and a run this instance never saw
        busy = instance.add_run(
            dg.DagsterRun(job_name=cluster.job_name, run_id="busy-run", status=dg.DagsterRunStatus.STARTED)
        )
        for kept in (busy.run_id, "unknown-run"):
            (chunks / kept).mkdir()
            pl.DataFrame({"x": [1]}).write_parquet(chunks / kept / "000000.parquet")
        record = json.loads(ref.read_text())
        record["paths"] += [str(chunks / "busy-run" / "000000.parquet"), str(chunks / "unknown-run" / "000000.parquet")]
        ref.write_text(json.dumps(record))

        second = job.execute_in_process(instance=instance)
        assert second.success
        assert sorted(p.name for p in chunks.iterdir()) == sorted([second.run_id, "busy-run", "unknown-run"])
        assert pl.read_parquet(json.loads(ref.read_text())["paths"])["tagged"].to_list() == [
            f"w{i}!" for i in range(10)
        ]
