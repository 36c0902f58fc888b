"""The `exo` command, run as users run it: the installed script, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

REPO = Path(__file__).resolve().parents[2]
EXO = Path(sys.executable).parent / "exo"
JOB = "exospherehost__orders_report"

BROKEN = """\
version: 0.0.1b
cluster:
  identifier: exospherehost/broken
  satellites:
    - name: Find files
      uses: satellite/exospherehost/get-filez
      identifier: files
      config:
        provider: local
        folder-path: data/orders
"""


def exo(*args: str, dagster_home: Path | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "DAGSTER_HOME")}
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    return subprocess.run([str(EXO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_validate_the_demo_folder(tmp_path):
    result = exo("validate", "definitions")
    assert result.returncode == 0, result.stdout + result.stderr
    assert JOB in result.stdout
    assert "demo.yaml" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_validate_a_broken_file_reports_its_location_without_a_traceback(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    column = BROKEN.splitlines()[5].index("satellite/") + 1
    result = exo("validate", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{bad}:6:{column}" in output
    assert "unknown satellite `satellite/exospherehost/get-filez`" in output
    assert "`satellite/exospherehost/get-files`" in output
    assert "Traceback" not in output
    assert not result.stdout.startswith("ok")


def test_validate_a_missing_path_exits_1_without_a_traceback(tmp_path):
    result = exo("validate", str(tmp_path / "no-such.yaml"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "no-such.yaml" in output
    assert "Traceback" not in output


def test_run_the_demo_writes_the_report(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # from another working directory: the cluster's relative paths are the file's, not the cwd's
    result = exo("run", str(REPO / "definitions" / "demo.yaml"), dagster_home=home, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert ": success" in result.stdout
    report = pl.read_parquet(home / "exo" / "reports" / "orders-by-region.parquet")
    assert report.columns == ["region", "orders", "units", "revenue"]
    assert report["region"].to_list() == ["east", "north", "south", "west"]
    orders = pl.concat([pl.read_csv(f) for f in sorted((REPO / "definitions" / "data" / "orders").glob("*.csv"))])
    assert report["orders"].sum() == orders.height
    for step in ("files", "orders", "revenue", "report"):
        assert (home / "exo" / "outputs" / JOB / f"{step}.parquet").is_file(), step


def test_satellites_lists_the_builtins():
    result = exo("satellites")
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line.split("@", 1)[0] for line in result.stdout.splitlines() if line.strip()]
    assert "satellite/exospherehost/sql" in ids
    for builtin in ("get-files", "read-table", "write-table"):
        assert f"satellite/exospherehost/{builtin}" in ids


def test_cache_clear_forgets_a_clusters_rows(tmp_path):
    import os
    import subprocess

    from exo_dagster.sdk.row_cache import RowCache

    env = {**os.environ, "EXO_CACHE_DIR": str(tmp_path)}
    with RowCache(str(tmp_path / "acme__ticket_triage.sqlite")) as rows:
        rows.put("k1", "labels", {"a": 1})
        rows.put("k2", "tickets", {"a": 2})
    exo = str(Path(sys.executable).parent / "exo")
    step = subprocess.run(
        [exo, "cache", "clear", "acme/ticket-triage", "--step", "labels"], env=env, capture_output=True, text=True
    )
    assert step.returncode == 0 and "cleared 1 cached row(s) of acme__ticket_triage step labels" in step.stdout
    whole = subprocess.run([exo, "cache", "clear", "acme__ticket_triage"], env=env, capture_output=True, text=True)
    assert "cleared 1 cached row(s)" in whole.stdout
    with RowCache(str(tmp_path / "acme__ticket_triage.sqlite")) as rows:
        assert rows.count() == 0
    none = subprocess.run([exo, "cache", "clear", "other/cluster"], env=env, capture_output=True, text=True)
    assert none.returncode == 0 and "no cache for other__cluster" in none.stdout
