"""exo_dagster.sdk.atomic_write: whole file or the old one; no temporary file left; sweepable names."""

from __future__ import annotations

import os

import fsspec
import pytest
from upath import UPath

from exo_dagster.sdk.atomic_write import atomic_path, atomic_write
from exo_dagster.sdk.internal import temp_files


def test_local_write_replaces_the_target(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_write(target, "w") as fh:
        fh.write("new")
        assert target.read_text() == "old"  # readers still see the old file
        tmp = fh.name
        assert os.path.basename(tmp).startswith(".out.json.") and tmp.endswith(".tmp")
        assert os.path.dirname(tmp) == str(tmp_path)
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.json"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target)) as fh:
            fh.write(b"half")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_path_names_a_temporary_file_sweep_knows(tmp_path):
    target = str(tmp_path / "t.parquet")
    with atomic_path(target) as tmp:
        open(tmp, "w").write("x")
        folder, name = os.path.split(tmp)
        assert folder == str(tmp_path) and name.startswith(f".t.parquet.{os.getpid()}-")
    assert open(target).read() == "x"


def test_orphans_of_dead_writers_are_swept(tmp_path):
    target = tmp_path / "t.csv"
    orphan = tmp_path / f".t.csv.999999999-{'a' * 32}.tmp"
    orphan.write_text("left by a killed write")
    with atomic_write(target, "w") as fh:
        fh.write("a")
    assert not orphan.exists()
    orphan.write_text("again")
    with atomic_write(target, "w", sweep=False) as fh:
        fh.write("b")
    assert orphan.exists()
    assert temp_files.sweep(str(target)) == [str(orphan)]


def test_remote_targets_use_the_filesystem():
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/data/out.csv", b"old")
    with atomic_write("/bucket/data/out.csv", "wb", fs) as fh:
        fh.write(b"new")
        assert fs.cat("/bucket/data/out.csv") == b"old"
    assert fs.cat("/bucket/data/out.csv") == b"new"
    assert fs.ls("/bucket/data", detail=False) == ["/bucket/data/out.csv"]

    with atomic_write(UPath("memory:///bucket/data/ref.json"), "w") as fh:
        fh.write("{}")
    assert fs.cat("/bucket/data/ref.json") == b"{}"
    with pytest.raises(ValueError):
        with atomic_write("memory:///bucket/data/out.csv") as fh:
            fh.write(b"half")
            raise ValueError("no")
    assert fs.cat("/bucket/data/out.csv") == b"new"
    assert sorted(fs.ls("/bucket/data", detail=False)) == ["/bucket/data/out.csv", "/bucket/data/ref.json"]


def test_a_local_filesystem_object_writes_locally(tmp_path):
    target = str(tmp_path / "x.txt")
    with atomic_write(target, "w", fsspec.filesystem("file"), encoding="utf-8") as fh:
        fh.write("ü")
    assert open(target, encoding="utf-8").read() == "ü"
    assert os.listdir(tmp_path) == ["x.txt"]


def test_only_write_modes():
    with pytest.raises(ValueError):
        with atomic_write("x", "rb"):
            pass
