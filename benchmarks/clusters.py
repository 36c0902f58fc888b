"""Synthetic clusters for the benchmarks: one `read-table` step, then a chain of `sql` steps.

    s0000: read-table   config.path: <a small Parquet file>
    s0001: sql          select * from s0000
    s0002: sql          select * from s0001
    ...

Kept deliberately plain (no templates, short queries) so parse cost is the spec machinery,
not our own YAML bloat.
"""

from __future__ import annotations

import os

import polars as pl


def step_id(i: int) -> str:
    return f"s{i:04d}"


def chain_yaml(
    steps: int, data_path: str = "data.parquet", name: str | None = None, *, uses: str = "satellite/exospherehost/sql"
) -> str:
    """`uses` is the satellite of steps 1..n-1; only the built-in `sql` gets a `query:` config."""
    if steps < 1:
        raise ValueError("a cluster needs at least one step")
    lines = [
        "version: 0.0.1b",
        "cluster:",
        f"  identifier: bench/{name or f'chain-{steps}'}",
        "  title: benchmark chain",
        "  satellites:",
        "    - name: read",
        "      uses: satellite/exospherehost/read-table",
        f"      identifier: {step_id(0)}",
        "      config:",
        f"        path: {data_path}",
    ]
    for i in range(1, steps):
        lines += [f"    - name: step {i}", f"      uses: {uses}", f"      identifier: {step_id(i)}"]
        if uses == "satellite/exospherehost/sql":
            lines += ["      config:", f"        query: select * from {step_id(i - 1)}"]
    return "\n".join(lines) + "\n"


def small_frame(rows: int = 10) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(rows)),
            "value": [float(i) * 1.5 for i in range(rows)],
            "label": [f"row-{i}" for i in range(rows)],
        }
    )


def write_small_parquet(folder: str, rows: int = 10) -> str:
    path = os.path.join(folder, "data.parquet")
    small_frame(rows).write_parquet(path)
    return path
