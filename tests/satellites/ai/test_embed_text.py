"""embed-text with the real packaged all-MiniLM-L6-v2 (offline), the DuckDB near-duplicate helper,
and the ticket-dedupe demo cluster compiled and run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from exo_dagster import StepContext, compile_cluster, load_cluster_file
from exo_dagster.sdk.step_errors import PermanentError
from satellites.ai.embed_text import EmbedTextConfig, embed_text, load_model, model_path, resolve_device, similar_pairs

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

REPO = Path(__file__).resolve().parents[3]
TICKETS = REPO / "definitions" / "tickets.yaml"
DUPLICATES = {
    ("T-026", "T-001"),
    ("T-027", "T-002"),
    ("T-028", "T-005"),
    ("T-029", "T-008"),
    ("T-030", "T-009"),
    ("T-031", "T-011"),
    ("T-032", "T-013"),
    ("T-033", "T-020"),
}


def ctx_for(tmp_path, rows: pl.DataFrame | None = None, previous=None) -> StepContext:
    return StepContext(
        cluster="t/embed",
        step="emb",
        run_id="r",
        input={},
        rows=rows.lazy() if rows is not None else None,
        tables={},
        previous=previous,
        secrets={},
        base_dir=str(tmp_path),
        data_dir=str(tmp_path / "data"),
    )


def test_per_row_text_becomes_unit_vectors_with_meaningful_similarity(tmp_path):
    rows = pl.DataFrame(
        {
            "text": [
                "I was charged twice for my invoice",
                "My card was billed two times for the invoice",
                "The app crashes when I log in",
                None,
            ],
            "id": [1, 2, 3, 4],
        }
    )
    ctx = ctx_for(tmp_path, rows)
    out = embed_text(ctx, EmbedTextConfig())
    assert out.columns == ["text", "id", "embedding"] and out.schema["embedding"] == pl.Array(pl.Float32, 384)
    assert out["embedding"][3] is None and out["id"].to_list() == [1, 2, 3, 4]
    vectors = np.stack(out["embedding"].head(3).to_list())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same, different = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same > 0.7 and different < 0.3
    assert ctx.metadata["exo/embed/device"] == resolve_device("auto") and ctx.metadata["exo/embed/dimensions"] == 384


def test_same_vectors_as_sentence_transformers_directly(tmp_path, stored):
    texts = [f"support ticket about topic {i}: the export fails" for i in range(70)]
    table = stored("docs", pl.DataFrame({"body": texts, "n": list(range(70))}))
    ctx = ctx_for(tmp_path, previous=table)
    out = embed_text(
        ctx, EmbedTextConfig(column="body", output_column="vec", batch_size=16, normalize=False, chunk_rows=32)
    )
    assert out.columns == ["body", "n", "vec"]
    model = load_model("all-MiniLM-L6-v2", resolve_device("auto"))  # the SentenceTransformer object itself
    direct = model.encode(texts, batch_size=16)
    assert np.allclose(np.stack(out["vec"].to_list()), direct, atol=1e-4)
    assert ctx.metadata["exo/rows"] == 70


def test_clear_errors_for_device_model_and_column(tmp_path):
    import torch

    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(PermanentError, match="no CUDA GPU is visible"):
            resolve_device("cuda")
    with pytest.raises(PermanentError, match="cannot load model `no/such-model`"):
        load_model("no/such-model", "cpu", base_dir=str(tmp_path))
    with pytest.raises(PermanentError, match="no column `text`.*body"):
        embed_text(ctx_for(tmp_path, pl.DataFrame({"body": ["x"]})), EmbedTextConfig())
    with pytest.raises(PermanentError, match="nothing to embed"):
        embed_text(ctx_for(tmp_path), EmbedTextConfig())
    with pytest.raises(ValueError):
        EmbedTextConfig.model_validate({"device": "tpu"})


def test_a_local_model_folder_is_loaded_by_path(tmp_path):
    import shutil

    folder = tmp_path / "models" / "mini"
    shutil.copytree(model_path("all-MiniLM-L6-v2"), folder)
    out = embed_text(ctx_for(tmp_path, pl.DataFrame({"text": ["hello"]})), EmbedTextConfig(model="models/mini"))
    packaged = embed_text(ctx_for(tmp_path, pl.DataFrame({"text": ["hello"]})), EmbedTextConfig())
    assert np.allclose(out["embedding"][0].to_numpy(), packaged["embedding"][0].to_numpy(), atol=1e-5)


def test_similar_pairs_from_a_frame_and_a_parquet_file(tmp_path):
    frame = pl.DataFrame(
        {"id": [1, 2, 3, 4], "embedding": [[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], None]},
        schema={"id": pl.Int64, "embedding": pl.Array(pl.Float32, 2)},
    )
    pairs = similar_pairs(frame, threshold=0.9)
    assert pairs.select("left_id", "right_id").rows() == [(1, 2)] and pairs["similarity"][0] == pytest.approx(
        0.995, abs=1e-3
    )
    frame.write_parquet(tmp_path / "e.parquet")
    assert similar_pairs(str(tmp_path / "e.parquet"), threshold=-1.0).height == 3


def test_ticket_dedupe_demo_is_a_gpu_routed_cluster_that_runs_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    cluster = load_cluster_file(TICKETS)
    defs = compile_cluster(cluster)
    job = defs.resolve_job_def(cluster.job_name)
    assert cluster.job_name == "exospherehost__ticket_dedupe" and job.tags["exo/compute"] == "gpu"
    embed = defs.resolve_assets_def(dg.AssetKey(cluster.asset_key_path("embeddings")))
    assert embed.node_def.tags["exo/gpu"] == "1" and json.loads(embed.node_def.tags["exo/resources"])["gpu"] == 1
    assert "gpu" in embed.specs_by_key[embed.key].kinds
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    report = pl.read_parquet(tmp_path / "exo" / "reports" / "ticket-duplicates.parquet")
    assert report.columns == ["ticket", "duplicate_of", "similarity", "ticket_text", "duplicate_text"]
    assert set(report.select("ticket", "duplicate_of").rows()) == DUPLICATES
    assert report["similarity"].min() >= 0.75 and report["similarity"].to_list() == sorted(
        report["similarity"], reverse=True
    )
    embeddings = pl.read_parquet(tmp_path / "exo" / "outputs" / cluster.job_name / "embeddings.parquet")
    assert embeddings.height == 50 and embeddings.schema["embedding"] == pl.Array(pl.Float32, 384)
