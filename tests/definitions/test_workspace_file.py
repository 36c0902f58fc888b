"""The repository's workspace.yaml loads from any folder: its paths are relative to the file, not to the cwd
(`dagster-daemon run -w path/to/workspace.yaml` once failed with "No module named 'definitions'")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent


def test_the_workspace_file_loads_the_code_location_from_another_folder(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_CLUSTERS", "EXO_STRICT_LOAD", "EXO_SATELLITE_PATH")}
    # this checkout's exo_dagster; the folder holding `definitions` must come from the workspace file alone
    env.update(DAGSTER_HOME=str(home), EXO_DATA_DIR=str(tmp_path / "exo"), PYTHONPATH=str(tmp_path / "exo_only"))
    (tmp_path / "exo_only").mkdir()
    for package in ("exo_dagster", "satellites"):
        (tmp_path / "exo_only" / package).symlink_to(REPO / package)
    result = subprocess.run(
        [str(EXE / "dagster"), "job", "list", "-w", str(REPO / "workspace.yaml")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-6000:]
    assert "exospherehost__orders_report" in text and "exospherehost__ticket_dedupe" in text, text[-6000:]
    assert "No module named" not in text, text[-6000:]
