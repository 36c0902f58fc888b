"""A fan-out merge's clean-up, end to end: a crafted previous reference cannot make it delete a run's storage
or another asset's live chunks, and the superseded run's own chunk folder still goes."""

from __future__ import annotations

import json
import logging

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.storage.chunk_folders import MARKER

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/trust
  satellites:
    - name: Words
      uses: satellite/exospherehost/sql
      identifier: words
      config: {query: "select 'w' || i as word from range(6) t(i) order by i"}
    - name: Tag
      uses: satellite/test/trust-tag
      identifier: tagged
      fan-out: {chunk-rows: 3}
      input: {word: "$${{ satellites.words.output.word }}"}
    - name: Shout
      uses: satellite/test/trust-tag
      identifier: shouted
      fan-out: {chunk-rows: 3}
      input: {word: "$${{ satellites.words.output.word }}"}
"""


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/trust-tag", config=SatelliteConfig, registry=extra)
    def tag(ctx: StepContext, config):
        return ctx.rows.collect().with_columns((pl.col("word") + "!").alias("tagged"))

    return builtin_registry().merged(extra)


def test_a_crafted_reference_deletes_neither_run_storage_nor_another_assets_chunks(tmp_path, monkeypatch):
    home, data = tmp_path / "home", tmp_path / "home" / "exo"
    monkeypatch.setenv("EXO_DATA_DIR", str(data))
    home.mkdir()
    cluster = parse_cluster(CLUSTER, "trust.yaml", registry=_registry())
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    tagged_chunks, shouted_chunks = (data / "chunks" / "test" / "trust" / name for name in ("tagged", "shouted"))
    outputs = data / "outputs" / "test__trust"
    tagged_ref, shouted_ref = (outputs / f"{name}.parquet.ref.json" for name in ("tagged", "shouted"))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        first = job.execute_in_process(instance=instance)
        assert first.success and sorted(p.name for p in tagged_chunks.iterdir()) == [first.run_id]
        marker = json.loads((tagged_chunks / first.run_id / MARKER).read_text())
        assert marker == {"asset": ["test", "trust", "tagged"], "run_id": first.run_id}
        # the finished run's own storage folder beside the data folder, reached by `..` from the chunk root
        storage = home / "storage" / first.run_id
        storage.mkdir(parents=True, exist_ok=True)
        (storage / "000000.parquet").write_bytes(b"compute log")
        live_shouted = json.loads(shouted_ref.read_text())["paths"]
        record = json.loads(tagged_ref.read_text())  # what any step could write over tagged's reference
        record["paths"] += [f"{data}/chunks/../../storage/{first.run_id}/000000.parquet", *live_shouted]
        tagged_ref.write_text(json.dumps(record))

        second = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["test", "trust", "tagged"])])
        assert second.success
        assert (storage / "000000.parquet").read_bytes() == b"compute log"
        assert all(pl.read_parquet(p).height == 3 for p in live_shouted)  # shouted's live chunks, still readable
        assert sorted(p.name for p in shouted_chunks.iterdir()) == [first.run_id]
        assert sorted(p.name for p in tagged_chunks.iterdir()) == [second.run_id]  # the legitimate clean-up
        merged = pl.read_parquet(json.loads(tagged_ref.read_text())["paths"])
        assert merged["tagged"].to_list() == [f"w{i}!" for i in range(6)]
        warnings = [e.user_message for e in instance.all_logs(second.run_id) if e.level == logging.WARNING]
        assert any("3 path(s) that are not chunk files of this asset's fan-out" in w for w in warnings), warnings
