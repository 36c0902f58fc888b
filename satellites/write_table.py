"""satellite/exospherehost/write-table: write a table as Parquet, CSV or JSONL, atomically."""

from __future__ import annotations

import os
from typing import Literal

import polars as pl
from upath import UPath

from exo_dagster import SatelliteConfig, StepContext, satellite
from exo_dagster.io_manager import write_parquet_atomic
from exo_dagster.table import StoredTable

FORMATS = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}


class WriteTableConfig(SatelliteConfig):
    path: str
    format: Literal["auto", "parquet", "csv", "jsonl"] = "auto"
    mode: Literal["overwrite"] = "overwrite"


@satellite(
    "satellite/exospherehost/write-table",
    config=WriteTableConfig,
    inputs={"table": "the table to write (${{ satellites.X.output }}); default: the previous step's output"},
    outputs={"path": "where it was written", "format": "file format", "rows": "rows written"},
    kinds=("polars", "parquet"),
)
def write_table(ctx: StepContext, config: WriteTableConfig) -> pl.DataFrame:
    """Writes its input table to a file (relative paths land in the exo data folder), replacing it atomically."""
    table = ctx.input_table("table")
    if not isinstance(table, StoredTable):
        raise ValueError("write-table needs `input.table: ${{ satellites.X.output }}` or a previous step")
    target = ctx.output_path(config.path)
    fmt = config.format if config.format != "auto" else FORMATS.get(target.rsplit(".", 1)[-1].lower(), "parquet")
    if "://" not in target:
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    frame = table.lazy()
    if fmt == "parquet":
        write_parquet_atomic(frame, UPath(target))
    else:
        tmp = f"{target}.tmp"
        frame.sink_csv(tmp) if fmt == "csv" else frame.sink_ndjson(tmp)
        os.replace(tmp, target)
    rows = int(table.lazy().select(pl.len()).collect().item())
    return pl.DataFrame({"path": [target], "format": [fmt], "rows": [rows]})
