"""A code location loads no engine its clusters do not use yet: DuckDB and pyarrow load with the first step that
needs them."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/one-step
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      identifier: read
      config: {{path: "{data}"}}
"""

PROBE = """\
import sys
from exo_dagster.location import location_definitions
defs = location_definitions([{folder!r}])
assert defs.resolve_job_def("test__one_step")
print(sorted(m for m in ("duckdb", "pyarrow") if m in sys.modules))
"""


def test_a_location_without_sql_steps_loads_neither_duckdb_nor_pyarrow(tmp_path):
    data = tmp_path / "data.parquet"
    pl.DataFrame({"x": [1, 2]}).write_parquet(data)
    folder = tmp_path / "clusters"
    folder.mkdir()
    (folder / "one.yaml").write_text(CLUSTER.format(data=data))
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(folder=str(folder))], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
