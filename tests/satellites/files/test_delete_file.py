"""delete-file: deletes files on any fsspec storage; an already-deleted file is a success on re-run."""

from __future__ import annotations

import dataclasses

import dagster as dg
import fsspec
import polars as pl
import pytest

from exo_dagster import compile_cluster, parse_cluster
from satellites.files.delete_file import DeleteFileConfig, delete_file


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "sub").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp_path / "in" / name).write_text(name)
    return tmp_path / "in"


def test_deletes_and_a_rerun_reports_missing(tree, make_ctx, stored):
    files = stored(
        "files", pl.DataFrame({"path": [str(tree / "a.csv"), str(tree / "b.csv")], "name": ["a.csv", "b.csv"]})
    )
    out = delete_file(make_ctx(previous=files), DeleteFileConfig())
    assert out.to_dicts() == [{"path": str(tree / n), "status": "deleted", "_error": None} for n in ("a.csv", "b.csv")]
    assert [p.name for p in tree.iterdir()] == ["sub"]
    again = delete_file(make_ctx(previous=files), DeleteFileConfig())
    assert again["status"].to_list() == ["missing", "missing"] and again["_error"].null_count() == 2


def test_missing_not_ok_and_folders_are_row_errors(tree, make_ctx):
    ctx = make_ctx(input={"paths": ["in/a.csv", "in/ghost.csv", "in/sub"]})
    out = delete_file(ctx, DeleteFileConfig(missing_ok=False))
    assert out["status"].to_list() == ["deleted", None, None]
    assert out["_error"].to_list()[1:] == [
        "FileNotFoundError: `in/ghost.csv` does not exist (set `missing-ok: true` to accept that)",
        "IsADirectoryError: `in/sub` is a folder; delete-file deletes files only",
    ]
    assert (tree / "sub").is_dir() and ctx.metadata["exo/rows_failed"] == 2


def test_rerun_of_a_listing_is_served_from_the_cache_even_when_missing_is_not_ok(tree, make_ctx, tmp_path):
    config = DeleteFileConfig(missing_ok=False)
    cached = {
        "cache_path": str(tmp_path / "cache.sqlite"),
        "identity": ("satellite/exospherehost/delete-file", "1.0.0", config.model_dump(mode="json", by_alias=True)),
    }
    listing = pl.DataFrame({"path": [str(tree / "a.csv")], "hash": ["h-a"]})  # as get-files lists it
    for run in range(2):
        ctx = dataclasses.replace(make_ctx(), rows=listing.lazy(), **cached)
        out = delete_file(ctx, config)
        assert out["status"].to_list() == ["deleted"] and out["_error"].to_list() == [None]
        assert ctx.metadata["exo/rows_cached"] == run
    assert not (tree / "a.csv").exists()


def test_fsspec_url(make_ctx):
    memory = fsspec.filesystem("memory")
    memory.pipe("/exo-delete/x.txt", b"x")
    out = delete_file(make_ctx(input={"paths": ["memory://exo-delete/x.txt"]}), DeleteFileConfig())
    assert out["status"].to_list() == ["deleted"] and not memory.exists("/exo-delete/x.txt")


def test_in_a_compiled_cluster(tmp_path, tree, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    text = """\
version: 0.0.1b
cluster:
  identifier: test/delete
  satellites:
    - name: Old exports
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: in, allowed-extensions: [csv]}
    - name: Clean up
      uses: satellite/exospherehost/delete-file
      identifier: deleted
      on-row-error: fail
"""
    cluster = parse_cluster(text, str(tmp_path / "cluster.yaml"))
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    out = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__delete" / "deleted.parquet")
    assert out["status"].to_list() == ["deleted", "deleted"] and [p.name for p in tree.iterdir()] == ["sub"]
    [materialization] = result.asset_materializations_for_node("deleted__test__delete")
    assert materialization.metadata["exo/rows_computed"].value == 2
