"""satellite/exospherehost/read-table: CSV, JSONL or Parquet files into one table."""

from __future__ import annotations

from typing import Literal

import polars as pl

from exo_dagster import SatelliteConfig, StepContext, satellite

READERS = {"csv": pl.scan_csv, "jsonl": pl.scan_ndjson, "parquet": pl.scan_parquet}
EXTENSIONS = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "parquet": "parquet", "pq": "parquet"}


class ReadTableConfig(SatelliteConfig):
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    path: str | None = None
    separator: str = ","
    source_column: str | None = None


def _format_of(path: str, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    ext = path.rsplit(".", 1)[-1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"read-table: cannot tell the format of `{path}`; set `format:` to csv, jsonl or parquet")
    return EXTENSIONS[ext]


def _scan(path: str, fmt: str, config: ReadTableConfig) -> pl.LazyFrame:
    if fmt == "csv":
        return pl.scan_csv(path, separator="\t" if path.endswith(".tsv") else config.separator)
    return READERS[fmt](path)


@satellite(
    "satellite/exospherehost/read-table",
    config=ReadTableConfig,
    inputs={"paths": "file paths (a column such as ${{ satellites.files.output.path }}); default: the previous step's `path` column"},
    outputs={"*": "the columns of the files"},
)
def read_table(ctx: StepContext, config: ReadTableConfig) -> pl.LazyFrame:
    """Reads CSV, JSONL or Parquet files (one path, or a column of paths) into one table, lazily."""
    if config.path:
        paths = [ctx.path(config.path)]
    elif "paths" in ctx.input:
        given = ctx.input["paths"]
        paths = [given] if isinstance(given, str) else list(given)
    elif ctx.previous is not None:
        paths = ctx.previous.column("path")
    else:
        raise ValueError("read-table needs `config.path`, `input.paths`, or a previous step with a `path` column")
    frames = []
    for path in paths:
        frame = _scan(path if "://" in path else ctx.path(path), _format_of(path, config.format), config)
        if config.source_column:
            frame = frame.with_columns(pl.lit(path).alias(config.source_column))
        frames.append(frame)
    if not frames:
        return pl.LazyFrame()
    return pl.concat(frames, how="diagonal_relaxed")
