"""The deployment shape: many clusters from several teams in one code location; a broken file
removes only itself; `exo validate` succeeds exactly when the location loads every file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from exo_dagster import SpecError
from exo_dagster.cli import main as exo
from exo_dagster.location import ERRORS_GROUP, build_location, definitions_for

from .clusters_corpus import cluster_text, write_corpus

EXE = Path(sys.executable).parent


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.slow
def test_fifty_clusters_with_every_feature_share_one_location(tmp_path):
    clusters = tmp_path / "clusters"
    write_corpus(clusters, 50)
    built = build_location([clusters])
    assert built.ok, built.error().report()
    assert len(built.clusters) == 50
    repo = built.definitions.get_repository_def()
    jobs = set(repo.job_names)
    assert {f"team{i % 5}__c{i}" for i in range(50)} <= jobs
    assert sum(name.endswith("__on_failure") for name in jobs) == 25
    assert sum(name.endswith("__logs") for name in jobs) == sum(i % 3 != 1 for i in range(50))
    kinds = {c.spec.executor for c in built.clusters}
    assert kinds == {None, "local", "in-process", "celery", "k8s"}
    assert {
        type(c.spec.trigger.files if c.spec.trigger and c.spec.trigger.files else c.spec.trigger).__name__
        for c in built.clusters
    } >= {"NoneType", "FilesTrigger", "Trigger"}
    # Dagster's own check of the location, in a fresh process, as a deploy gate would run it
    (tmp_path / "defs.py").write_text(
        "from exo_dagster.location import definitions_for\n\ndefs = definitions_for('clusters')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_CLUSTERS",)}
    env.update(DAGSTER_HOME=str(tmp_path), EXO_STRICT_LOAD="1")
    out = subprocess.run(
        [str(EXE / "dagster"), "definitions", "validate", "-f", "defs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


BROKEN = {
    "bad_yaml.yaml": "version: 0.0.1b\ncluster:\n  identifier: bad/yaml\n  satellites: [\n",
    "unknown_sat.yaml": cluster_text(1)
    .replace("team1/c1", "bad/unknown")
    .replace("exospherehost/sql", "exospherehost/sqll", 1),
    "same_id.yaml": cluster_text(2),  # cluster/team2/c2 is already defined by c02.yaml
    "case_clash.yaml": cluster_text(3).replace("team3/c3", "TEAM3/C3"),
    "name_clash.yaml": cluster_text(5)
    .replace("team0/c5", "team0/c0__on_failure")
    .replace("  failure:", "  failurex:")
    .split("  failurex:")[0],  # its job is cluster c0's failure job name
    "inf.yaml": cluster_text(9).replace("team4/c9", "bad/inf").replace("cpu: 2", "cpu: .inf"),
}


@pytest.fixture
def location(tmp_path):
    clusters = tmp_path / "clusters"
    write_corpus(clusters, 10)
    for name, text in BROKEN.items():
        _write(clusters, name, text)
    return clusters


@pytest.mark.slow
def test_a_broken_file_removes_only_itself(location):
    built = build_location([location])
    assert {Path(f).name for f in built.broken} == set(BROKEN)
    assert len(built.clusters) == 10
    report = built.error().report()
    assert "bad_yaml.yaml:4:15: error: unclosed `[`" in report
    assert "unknown_sat.yaml:" in report and "did you mean `satellite/exospherehost/sql`" in report
    assert "same_id.yaml:3:15: error: cluster `team2/c2` is also defined by cluster/team2/c2" in report
    assert "case_clash.yaml:3:15: error: cluster `TEAM3/C3` is also defined by cluster/team3/c3" in report
    assert "name_clash.yaml:3:15: error: job `team0__c0__on_failure` is also defined by cluster/team0/c0" in report
    assert "inf.yaml:" in report and "not a finite number" in report
    assert "Traceback" not in report
    repo = built.definitions.get_repository_def()
    assert {f"team{i % 5}__c{i}" for i in range(10)} <= set(repo.job_names)
    error_assets = [k for k in repo.asset_graph.get_all_asset_keys() if k.path[0] == ERRORS_GROUP]
    assert len(error_assets) == len(BROKEN)


@pytest.mark.slow
def test_location_isolates_by_default_and_strict_load_fails_it(location, monkeypatch, caplog):
    monkeypatch.delenv("EXO_CLUSTERS", raising=False)
    monkeypatch.delenv("EXO_STRICT_LOAD", raising=False)
    with caplog.at_level("WARNING", logger="exo_dagster.location"):
        defs = definitions_for(location)
    assert sum("did not load" in r.getMessage() for r in caplog.records) == len(BROKEN)
    repo = defs.get_repository_def()
    assert "team0__c0" in repo.job_names
    broken_asset = next(
        a
        for a in repo.assets_defs_by_key.values()
        if a.key.path[0] == ERRORS_GROUP and a.key.path[1].startswith("unknown_sat_")
    )
    description = broken_asset.specs_by_key[broken_asset.key].description
    assert "unknown_sat.yaml:" in description and "unknown satellite" in description
    result = dg.materialize([broken_asset], raise_on_error=False)  # materializing it shows the error in a run
    assert not result.success
    monkeypatch.setenv("EXO_STRICT_LOAD", "1")
    with pytest.raises(SpecError) as info:
        definitions_for(location)
    assert len({d.location.file for d in info.value.errors}) == len(BROKEN)


def test_exo_validate_reports_every_broken_file_and_exits_1(location):
    result = CliRunner().invoke(exo, ["validate", str(location)])
    assert result.exit_code == 1
    assert result.output.count("ok  ") == 10
    assert f"{len(BROKEN)} of {len(BROKEN) + 10} cluster file(s) would not load" in result.output
    assert "Traceback" not in result.output


def test_exo_validate_ok_when_the_location_loads(tmp_path):
    write_corpus(tmp_path / "c", 6)
    result = CliRunner().invoke(exo, ["validate", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok  ") == 6


def test_missing_path_in_exo_clusters_is_an_error_entry_not_a_crash(tmp_path, monkeypatch):
    write_corpus(tmp_path / "c", 2)
    monkeypatch.setenv("EXO_CLUSTERS", str(tmp_path / "nowhere"))
    monkeypatch.delenv("EXO_STRICT_LOAD", raising=False)
    defs = definitions_for(tmp_path / "c")
    assert "team0__c0" in defs.get_repository_def().job_names


def test_a_cluster_that_fails_only_in_dagster_resolution_is_dropped_alone(tmp_path, monkeypatch):
    """The fallback path: the merged repository does not resolve, so each cluster is resolved alone
    and only the culprit is dropped (here a compiled job selects an asset that does not exist)."""
    import exo_dagster.location as location

    write_corpus(tmp_path / "c", 4)
    real = location.compiled_cluster

    def compile_with_a_defect(cluster, **kwargs):
        compiled = real(cluster, **kwargs)
        if cluster.spec.identifier == "team2/c2":
            bad = dg.define_asset_job(
                "team2__c2__bad", selection=dg.AssetSelection.assets(dg.AssetKey(["team2", "c2", "nope"]))
            )
            compiled = dataclasses.replace(
                compiled, definitions=dg.Definitions.merge(compiled.definitions, dg.Definitions(jobs=[bad]))
            )
        return compiled

    monkeypatch.setattr(location, "compiled_cluster", compile_with_a_defect)
    built = build_location([tmp_path / "c"])
    assert [Path(f).name for f in built.broken] == ["c02.yaml"]
    report = built.error().report()
    assert "c02.yaml:3:15: error: cluster/team2/c2 does not load in Dagster:" in report and "Traceback" not in report
    jobs = set(built.definitions.get_repository_def().job_names)
    assert {"team0__c0", "team1__c1", "team3__c3"} <= jobs and "team2__c2" not in jobs
