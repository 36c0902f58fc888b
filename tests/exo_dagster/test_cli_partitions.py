"""Launching a partitioned cluster from the command line, in subprocesses against a real instance on a temp
DAGSTER_HOME: `exo run --partition KEY|FIRST...LAST` and `dagster job execute --tags '{"dagster/partition": ...}'`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.exo_dagster.compile.test_partitions import DAILY

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "home").mkdir()
    cluster = tmp_path / "days.yaml"
    cluster.write_text(DAILY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        EXO_DATA_DIR=str(tmp_path / "data"),
        FACTOR="2",
        PYTHONPATH=str(REPO),
        EXO_CLUSTERS=str(cluster),
    )
    return tmp_path, cluster, env


def _python(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _runs(home: Path) -> list[tuple[str | None, str]]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return sorted(((r.tags.get("dagster/partition"), r.status.value) for r in instance.get_runs()), key=str)


def test_exo_run_a_range_runs_one_partition_each_in_order(setup):
    tmp_path, cluster, env = setup
    done = _python(
        [
            "-m",
            "exo_dagster.cli",
            "run",
            str(cluster),
            "--partition",
            "2026-11-02...2026-11-04",
            "--partition",
            "2026-11-07",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert [line.split(" partition ")[1] for line in lines] == [
        "2026-11-02: success",
        "2026-11-03: success",
        "2026-11-04: success",
        "2026-11-07: success",
    ]
    assert "4 of 4 partition runs succeeded" in done.stdout
    folder = tmp_path / "data" / "outputs" / "test__days" / "total"
    assert sorted(p.stem for p in folder.iterdir()) == ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-07"]
    assert _runs(tmp_path / "home") == [
        (d, "SUCCESS") for d in ("2026-11-02", "2026-11-03", "2026-11-04", "2026-11-07")
    ]


def test_exo_run_refuses_unknown_or_missing_keys_and_runs_nothing(setup):
    tmp_path, cluster, env = setup
    unknown = _python(
        ["-m", "exo_dagster.cli", "run", str(cluster), "--partition", "2026-11-01", "--partition", "yesterday"], env
    )
    assert unknown.returncode == 1
    assert "unknown partition `yesterday`" in unknown.stderr and "`2026-11-01` ... `2026-11-07`" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = _python(["-m", "exo_dagster.cli", "run", str(cluster)], env)
    assert missing.returncode == 1 and "is partitioned (daily)" in missing.stderr and "--partition" in missing.stderr
    assert not (tmp_path / "data" / "outputs").exists() and _runs(tmp_path / "home") == []


def test_dagster_job_execute_with_a_partition_tag(setup):
    tmp_path, _cluster, env = setup
    done = _python(
        [
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "definitions",
            "-j",
            "test__days",
            "--tags",
            json.dumps({"dagster/partition": "2026-11-05"}),
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stored = pl.read_parquet(tmp_path / "data" / "outputs" / "test__days" / "total" / "2026-11-05.parquet")
    assert stored.rows() == [("2026-11-05", 20)]
    unkeyed = _python(["-m", "dagster", "job", "execute", "-m", "definitions", "-j", "test__days"], env)
    assert unkeyed.returncode != 0
    assert "is partitioned (daily) and this run has no partition key" in unkeyed.stdout + unkeyed.stderr
    assert _runs(tmp_path / "home") == [("2026-11-05", "SUCCESS"), (None, "FAILURE")]


def test_dagster_job_backfill_queues_one_run_per_partition(setup):
    tmp_path, _cluster, env = setup
    done = _python(
        [
            "-m",
            "dagster",
            "job",
            "backfill",
            "-m",
            "definitions",
            "-j",
            "test__days",
            "--partitions",
            "2026-11-01,2026-11-02",
            "--noprompt",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # queued for the daemon's run queue (`dagster dev` / `dagster-daemon run` launches them)
    assert _runs(tmp_path / "home") == [("2026-11-01", "QUEUED"), ("2026-11-02", "QUEUED")]


FAILING = DAILY.replace(
    """      config: {query: "select day, factor * 10 as value from day"}""",
    """      config: {query: "select day, factor * 10 as value from day where error('boom ' || day) is null"}
  failure:
    satellites:
      - name: Note
        uses: satellite/exospherehost/sql
        identifier: note
        config: {query: "select day, ${{ failure.step }} as failed from day"}""",
)


def test_a_failure_section_reads_the_failed_runs_partition(setup):
    tmp_path, cluster, env = setup
    cluster.write_text(FAILING)
    done = _python(["-m", "exo_dagster.cli", "run", str(cluster), "--partition", "2026-11-03"], env)
    assert done.returncode == 1 and "partition 2026-11-03: FAILURE" in done.stdout, done.stderr[-3000:]
    env_query = {**env}
    shown = _python(
        ["-m", "exo_dagster.cli", "query", "select day, failed from days_on_failure.note", "--format", "json"],
        env_query,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [{"day": "2026-11-03", "failed": "total"}]
