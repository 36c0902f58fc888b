"""move-file: moves into a folder on any fsspec storage; re-runs and interrupted moves are safe."""

from __future__ import annotations

import dataclasses

import dagster as dg
import fsspec
import polars as pl
import pytest

from exo_dagster import compile_cluster, parse_cluster
from satellites.files.move_file import MoveFileConfig, move_file


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(f"content of {name}")
    return folder


def test_moves_files_from_the_previous_step_and_a_rerun_is_already_moved(tmp_path, inbox, make_ctx, stored):
    files = stored("files", pl.DataFrame({"path": [str(inbox / "a.txt"), str(inbox / "b.txt")]}))
    out = move_file(make_ctx(previous=files), MoveFileConfig(destination="done"))
    done = tmp_path / "data" / "done"  # a written path: relative to the data folder
    assert out.to_dicts() == [
        {"path": str(inbox / n), "destination": str(done / n), "status": "moved", "_error": None}
        for n in ("a.txt", "b.txt")
    ]
    assert sorted(p.name for p in done.iterdir()) == ["a.txt", "b.txt"] and not list(inbox.iterdir())
    assert (done / "a.txt").read_text() == "content of a.txt"

    again = move_file(make_ctx(previous=files), MoveFileConfig(destination="done"))
    assert again["status"].to_list() == ["already-moved", "already-moved"] and again["_error"].null_count() == 2


def test_overwrite_policies_and_an_interrupted_move(tmp_path, inbox, make_ctx):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.txt").write_text("an older, different a")
    (dest / "b.txt").write_text("content of b.txt")  # copied by a move that crashed before deleting the source
    paths = {"paths": ["inbox/a.txt", "inbox/b.txt", "inbox/nothing.txt"]}

    out = move_file(make_ctx(input=paths), MoveFileConfig(destination=str(dest)))
    assert out["status"].to_list() == [None, "moved", None]
    assert (
        out["_error"][0] == f"FileExistsError: `{dest / 'a.txt'}` already exists and differs from `inbox/a.txt`; "
        "set `overwrite: replace` or `overwrite: skip`"
    )
    assert (
        out["_error"][2]
        == f"FileNotFoundError: `inbox/nothing.txt` does not exist, and `{dest / 'nothing.txt'}` does not either"
    )
    assert not (inbox / "b.txt").exists()  # the interrupted move was finished

    skipped = move_file(
        make_ctx(input={"paths": "inbox/a.txt"}), MoveFileConfig(destination=str(dest), overwrite="skip")
    )
    assert skipped["status"].to_list() == ["skipped"] and (inbox / "a.txt").exists()
    replaced = move_file(
        make_ctx(input={"paths": "inbox/a.txt"}), MoveFileConfig(destination=str(dest), overwrite="replace")
    )
    assert replaced["status"].to_list() == ["moved"] and (dest / "a.txt").read_text() == "content of a.txt"


def test_across_filesystems_and_fsspec_urls(tmp_path, make_ctx):
    memory = fsspec.filesystem("memory")
    memory.pipe("/exo-test/inbox/m.bin", b"\x00bytes from memory")
    out = move_file(
        make_ctx(input={"paths": ["memory://exo-test/inbox/m.bin"]}),
        MoveFileConfig(destination=str(tmp_path / "local")),
    )
    assert (
        out["status"].to_list() == ["moved"] and (tmp_path / "local" / "m.bin").read_bytes() == b"\x00bytes from memory"
    )
    assert not memory.exists("/exo-test/inbox/m.bin")
    assert [p.name for p in (tmp_path / "local").iterdir()] == ["m.bin"]  # no temporary file left

    back = move_file(
        make_ctx(input={"paths": [str(tmp_path / "local" / "m.bin")]}),
        MoveFileConfig(destination="memory://exo-test/archive"),
    )
    assert back["destination"].to_list() == ["memory://exo-test/archive/m.bin"] and back["status"].to_list() == [
        "moved"
    ]
    assert memory.cat("/exo-test/archive/m.bin") == b"\x00bytes from memory"
    memory.rm("/exo-test", recursive=True)


def test_row_cache_skips_done_rows_but_a_new_file_under_an_old_name_is_moved(tmp_path, inbox, make_ctx):
    config = MoveFileConfig(destination=str(tmp_path / "done"), overwrite="replace")
    cached = {
        "cache_path": str(tmp_path / "cache.sqlite"),
        "identity": ("satellite/exospherehost/move-file", "1.0.0", config.model_dump(mode="json", by_alias=True)),
    }
    first = dataclasses.replace(make_ctx(input={"paths": ["inbox/a.txt"]}), **cached)
    assert move_file(first, config)["status"].to_list() == ["moved"]
    (inbox / "a.txt").write_text("a new a.txt arrived")
    second = dataclasses.replace(make_ctx(input={"paths": ["inbox/a.txt"]}), **cached)
    assert move_file(second, config)["status"].to_list() == ["moved"] and second.metadata["exo/rows_computed"] == 1
    assert (tmp_path / "done" / "a.txt").read_text() == "a new a.txt arrived"

    # rows listed by get-files carry a content hash: a re-run of the same listing comes from the cache
    listed = pl.DataFrame({"path": ["inbox/b.txt"], "hash": ["h-b"]})
    for run in range(2):
        ctx = dataclasses.replace(make_ctx(), rows=listed.lazy(), **cached)
        assert move_file(ctx, config)["status"].to_list() == ["moved"]
        assert ctx.metadata["exo/rows_cached"] == run


def test_in_a_compiled_cluster(tmp_path, inbox, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    text = """\
version: 0.0.1b
cluster:
  identifier: test/move
  satellites:
    - name: Inbox
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: inbox}
    - name: Archive
      uses: satellite/exospherehost/move-file
      identifier: archived
      config: {destination: archive}
      input:
        paths: ${{ satellites.files.output.path }}
"""
    cluster = parse_cluster(text, str(tmp_path / "cluster.yaml"))
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    out = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__move" / "archived.parquet")
    assert out["status"].to_list() == ["moved", "moved"]
    assert sorted(p.name for p in (tmp_path / "exo" / "archive").iterdir()) == ["a.txt", "b.txt"]
    # a second run finds an empty inbox: nothing to move, still a success
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    assert pl.read_parquet(tmp_path / "exo" / "outputs" / "test__move" / "archived.parquet").height == 0
