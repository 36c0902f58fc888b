"""`exo` with an unset or odd environment: one line that says what to set, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

EXO = Path(sys.executable).parent / "exo"
REPO = Path(__file__).resolve().parents[2]

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/one
  satellites:
    - {name: Read, uses: satellite/exospherehost/read-table, identifier: rows, config: {path: rows.csv}}
"""


def _exo(*args: str, cwd: Path, **env_overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "DAGSTER_HOME")}
    env.update({k: v for k, v in env_overrides.items() if v is not None})
    return subprocess.run([str(EXO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_run_without_dagster_home_says_what_to_set(tmp_path):
    (tmp_path / "one.yaml").write_text(CLUSTER)
    (tmp_path / "rows.csv").write_text("a\n1\n")
    done = _exo("run", "one.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.count("\n") == 1 and "DAGSTER_HOME is not set" in done.stderr
    assert "export DAGSTER_HOME=" in done.stderr


def test_run_creates_a_missing_dagster_home(tmp_path):
    (tmp_path / "one.yaml").write_text(CLUSTER)
    (tmp_path / "rows.csv").write_text("a\n1\n2\n")
    home = tmp_path / "not" / "yet" / "there"
    done = _exo("run", "one.yaml", cwd=tmp_path, DAGSTER_HOME=str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "success" in done.stdout and (home / "dagster.yaml").is_file()


def test_an_unexpected_error_is_one_line(tmp_path):
    """A DAGSTER_HOME that is a file: Dagster cannot open it; exo prints one line naming the problem."""
    (tmp_path / "one.yaml").write_text(CLUSTER)
    (tmp_path / "rows.csv").write_text("a\n1\n")
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    done = _exo("run", "one.yaml", cwd=tmp_path, DAGSTER_HOME=str(home))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert str(home) in done.stderr
