"""Writes, moves and deletes stay inside the allowed roots: located errors for literal paths, step errors
for templated ones and for paths from data, and nothing outside is ever touched."""

from __future__ import annotations

import os

import dagster as dg
import polars as pl
import pytest

from exo_dagster import SpecError, compile_cluster, parse_cluster
from exo_dagster.sdk import allowed_paths


def test_inside_resolves_dots_home_and_links(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    allowed = [str(root)]
    assert allowed_paths.inside(str(root / "a" / "b.csv"), allowed)
    assert not allowed_paths.inside(str(root / ".." / "x"), allowed)
    assert not allowed_paths.inside(str(root / "link" / "x"), allowed)  # a link out of the root
    assert not allowed_paths.inside(str(tmp_path / "data-other" / "x"), allowed)  # a sibling sharing the prefix
    assert not allowed_paths.inside("~/x", allowed)
    assert allowed_paths.inside(f"file://{root}/x", allowed)


def test_operator_widens_through_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    extra = tmp_path / "shared"
    assert not allowed_paths.inside(str(extra / "x"), allowed_paths.roots())
    monkeypatch.setenv(allowed_paths.ENV, os.pathsep.join([str(extra), str(tmp_path / "other")]))
    assert allowed_paths.inside(str(extra / "x"), allowed_paths.roots())


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/paths
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {query: "select 1 as x"}
    - name: Write
      uses: satellite/exospherehost/write-table
      identifier: write
      config: {path: "PATH"}
"""

ESCAPES = [
    "../../x.parquet",
    "../x.parquet",
    "reports/../../x.parquet",
    "~/x.parquet",
    "/tmp/exo-escape/x.parquet",
    "file:///tmp/exo-escape/x.parquet",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_literal_write_outside_is_a_located_error(tmp_path, monkeypatch, path):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SpecError) as info:
        parse_cluster(CLUSTER.replace("PATH", path), str(tmp_path / "c.yaml"))
    text = str(info.value)
    assert f"{tmp_path / 'c.yaml'}:12:22: error: `path`" in text and "path" in text and "`" + path + "`" in text


def _run(tmp_path, text: str):
    cluster = parse_cluster(text, str(tmp_path / "cluster" / "c.yaml"))
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    failures = [
        e.event_specific_data.error.message
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    return result, failures


def _snapshot(folder) -> set[str]:
    return {str(p) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.slow
def test_path_escapes_over_every_satellite_and_way(tmp_path, monkeypatch):
    """The figure: attempts to write, move or delete outside the roots that acted outside (must be 0)."""
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "cluster").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    attempts, escapes = 0, 0
    targets = [
        "../outside/w.parquet",
        "../../outside/w.parquet",
        str(outside / "w.parquet"),
        f"file://{outside}/w.parquet",
    ]
    for target in targets:
        attempts += 1
        monkeypatch.setenv("EXO_TEST_TARGET", target)
        result, failures = _run(tmp_path, CLUSTER.replace("PATH", "${{ env.EXO_TEST_TARGET }}"))
        assert not result.success and ("outside the allowed folders" in failures[0] or "climbs out" in failures[0])
    sources = [str(victim), "../outside/victim.txt", f"file://{victim}", "~/../../" + str(victim).lstrip("/")]
    for satellite, config in (("delete-file", "{}"), ("move-file", "{destination: moved}")):
        for source in sources:
            attempts += 1
            victim.write_text("keep me")
            text = CLUSTER.split("    - name: Write")[0] + (
                f"    - name: Act\n      uses: satellite/exospherehost/{satellite}\n      identifier: act\n"
                f"      config: {config}\n      input: {{paths: ['{source}']}}\n"
            )
            result, failures = _run(tmp_path, text)
            assert not result.success and "outside the allowed folders" in failures[0], (satellite, source)
            escapes += not victim.exists()
    for destination in ("../outside", str(outside), "${{ env.EXO_TEST_TARGET }}"):
        attempts += 1
        monkeypatch.setenv("EXO_TEST_TARGET", str(outside))
        inbox = tmp_path / "cluster" / "in.txt"
        inbox.write_text("mine")
        text = CLUSTER.split("    - name: Write")[0] + (
            "    - name: Act\n      uses: satellite/exospherehost/move-file\n      identifier: act\n"
            f"      config: {{destination: '{destination}'}}\n      input: {{paths: [in.txt]}}\n"
        )
        try:
            result, failures = _run(tmp_path, text)
            assert not result.success and "outside the allowed folders" in failures[0]
        except SpecError as exc:
            assert "outside the allowed folders" in str(exc) or "climbs out" in str(exc)
    escapes += len(_snapshot(outside) - {str(victim)})
    assert attempts == 15 and escapes == 0


@pytest.mark.slow
def test_inside_the_roots_still_works_and_env_widens(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "in.txt").write_text("mine")
    text = CLUSTER.split("    - name: Write")[0] + (
        "    - name: Act\n      uses: satellite/exospherehost/move-file\n      identifier: act\n"
        "      config: {destination: done}\n      input: {paths: [in.txt]}\n"
    )
    result, failures = _run(tmp_path, text)
    assert result.success, failures
    assert (tmp_path / "data" / "done" / "in.txt").read_text() == "mine"
    shared = tmp_path / "shared"
    monkeypatch.setenv(allowed_paths.ENV, str(shared))
    result, failures = _run(tmp_path, CLUSTER.replace("PATH", str(shared / "w.parquet")))
    assert result.success, failures
    assert pl.read_parquet(shared / "w.parquet")["x"].to_list() == [1]
