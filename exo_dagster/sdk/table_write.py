"""Writing what a satellite returns as one Parquet file, atomically (readers never see half a file)."""

from __future__ import annotations

from typing import Any

import sys

import polars as pl
from upath import UPath

from exo_dagster.sdk import paths
from exo_dagster.sdk.atomic_write import atomic_path, atomic_write
from exo_dagster.sdk.table import StoredTable


def is_relation(obj: Any) -> bool:
    """A DuckDB relation (DuckDB is not imported for this: a process that never loaded it holds none)."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(obj, duckdb.DuckDBPyRelation)


def to_frame(obj: Any) -> Any:
    """Normalise what a satellite may return into something we can write as Parquet: a polars
    DataFrame or LazyFrame, or a DuckDB relation."""
    if isinstance(obj, (pl.DataFrame, pl.LazyFrame)) or is_relation(obj):
        return obj
    if isinstance(obj, StoredTable):
        return obj.lazy()
    if obj is None:
        return pl.DataFrame()
    if isinstance(obj, dict):
        return pl.DataFrame([obj])
    if isinstance(obj, list):
        return pl.DataFrame(obj)
    raise TypeError(f"a satellite must return a table (polars DataFrame/LazyFrame, DuckDB relation or list of dicts), got {type(obj).__name__}")


def write_parquet_atomic(obj: Any, path: UPath) -> None:
    """Write to a temporary name beside the target, then rename: readers never see half a file."""
    frame = to_frame(obj)
    if not paths.is_url(str(path)) and not isinstance(frame, pl.LazyFrame):
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)  # polars DataFrame and DuckDB relation alike
        return
    if paths.is_url(str(path)):
        frame = frame.collect(engine="streaming") if isinstance(frame, pl.LazyFrame) else (
            frame.pl() if is_relation(frame) else frame)
    with atomic_write(path, "wb") as fh:
        if isinstance(frame, pl.LazyFrame):
            # Into a handle we own: given a path, Polars may still create the file after an error is raised.
            frame.sink_parquet(fh)
        else:
            frame.write_parquet(fh)
