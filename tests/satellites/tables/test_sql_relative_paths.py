"""A relative path in a sql step's SQL means the cluster's folder, from any working folder and launch path
(`exo run`, `dagster job execute`), exactly as read-table's `path:` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/relpaths
  satellites:
    - {name: Read, uses: satellite/exospherehost/read-table, identifier: rows, config: {path: data/x.csv}}
    - name: Both ways
      uses: satellite/exospherehost/sql
      identifier: both
      config:
        query: >-
          select (select sum(a) from ${{ satellites.rows.output }}) as via_read_table,
                 (select sum(a) from read_csv('data/x.csv')) as via_sql
"""


@pytest.fixture
def cluster(tmp_path) -> Path:
    folder = tmp_path / "clusters"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.csv").write_text("a\n1\n2\n39\n")
    (folder / "relpaths.yaml").write_text(CLUSTER)
    return folder


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "DAGSTER_"))}
    return {**env, "DAGSTER_HOME": str(home), **extra}


def _result(home: Path) -> dict:
    (path,) = (home / "exo" / "outputs").rglob("both.parquet")
    return pl.read_parquet(path).to_dicts()[0]


@pytest.mark.parametrize("launch", ["exo run", "dagster job execute"])
def test_sql_reads_relative_to_the_cluster_folder_from_another_working_folder(cluster, tmp_path, launch):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    if launch == "exo run":
        command = [str(BIN / "exo"), "run", str(cluster / "relpaths.yaml")]
        env = _env(home)
    else:
        command = [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-f",
            str(REPO / "definitions" / "__init__.py"),
            "-j",
            "acme__relpaths",
        ]
        env = _env(home, EXO_CLUSTERS=str(cluster))
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert _result(home) == {"via_read_table": 42, "via_sql": 42}
