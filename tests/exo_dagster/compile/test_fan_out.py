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
    chunk_steps = sorted(e.step_key for e in result.all_events
                         if e.event_type == dg.DagsterEventType.STEP_SUCCESS and "__chunk[" in e.step_key)
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
    text = CLUSTER.replace("  satellites:\n", "  owners: [\"team:words\"]\n  tags: {domain: text}\n  satellites:\n", 1) \
        .replace("      fan-out: {chunk-rows: 3}\n", "      fan-out: {chunk-rows: 3}\n      tags: {tier: gold}\n")
    cluster = parse_cluster(text, "c.yaml", registry=_registry())
    key = dg.AssetKey(["test", "chunks", "tagged"])
    spec = compile_cluster(cluster).resolve_assets_def(key).specs_by_key[key]
    assert list(spec.owners) == ["team:words"] and spec.tags["domain"] == "text" and spec.tags["tier"] == "gold"
    assert spec.description.split("\n\n")[0] == "Tag"
