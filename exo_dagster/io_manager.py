"""Parquet storage for step outputs: atomic writes, lazy reads, any fsspec URL.

Built on Dagster's own `UPathIOManager` (the base dagster-polars uses) rather than dagster-polars
itself, which breaks on Polars 2 (see README design notes).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import duckdb
import polars as pl
from dagster import ConfigurableIOManagerFactory, InputContext, OutputContext, UPathIOManager
from upath import UPath

from . import paths
from .table import StoredTable


def to_frame(obj: Any) -> pl.DataFrame | pl.LazyFrame | duckdb.DuckDBPyRelation:
    """Normalise what a satellite may return into something we can write as Parquet."""
    if isinstance(obj, (pl.DataFrame, pl.LazyFrame, duckdb.DuckDBPyRelation)):
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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    local = not paths.is_url(str(path))
    target = str(tmp)
    try:
        if isinstance(frame, pl.DataFrame):
            if local:
                frame.write_parquet(target)
            else:
                with tmp.open("wb") as fh:
                    frame.write_parquet(fh)
        elif isinstance(frame, pl.LazyFrame):
            if local:
                frame.sink_parquet(target)
            else:
                with tmp.open("wb") as fh:
                    frame.collect(engine="streaming").write_parquet(fh)
        else:
            if local:
                frame.write_parquet(target)
            else:
                with tmp.open("wb") as fh:
                    frame.pl().write_parquet(fh)
        if local:
            os.replace(target, str(path))
        else:
            tmp.fs.mv(str(tmp), str(path))
    except BaseException:
        try:
            tmp.unlink()
        except (FileNotFoundError, OSError):
            pass
        raise


class ParquetTableIOManager(UPathIOManager):
    """Stores each asset as `<base>/<key path>.parquet`; hands back a StoredTable (or LazyFrame)."""

    extension = ".parquet"

    @property
    def storage_options(self) -> dict[str, Any]:
        # Dagster 1.13 reads UPath._kwargs, which universal-pathlib 0.3 renamed to storage_options.
        return dict(getattr(self._base_path, "storage_options", {}) or {})

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        write_parquet_atomic(obj, path)
        meta = pl.scan_parquet(str(path), storage_options=self.storage_options or None)
        schema = meta.collect_schema()
        context.add_output_metadata({
            "dagster/row_count": int(meta.select(pl.len()).collect().item()),
            "exo/columns": ", ".join(f"{n}: {t}" for n, t in schema.items()),
            "exo/path": str(path),
        })

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        table = StoredTable(str(path), self.storage_options or None)
        wanted = getattr(context.dagster_type, "typing_type", None)
        if wanted is pl.LazyFrame:
            return table.lazy()
        if wanted is pl.DataFrame:
            return table.collect()
        return table

    def get_metadata(self, context: OutputContext, obj: Any) -> dict:
        return {}


class ExoParquetIOManager(ConfigurableIOManagerFactory):
    """The configurable face of ParquetTableIOManager; `base_path` defaults to the exo data folder."""

    base_path: str | None = None

    def create_io_manager(self, context) -> ParquetTableIOManager:
        base = self.base_path or os.path.join(paths.data_dir(), "outputs")
        if not paths.is_url(base):
            os.makedirs(base, exist_ok=True)
        return ParquetTableIOManager(base_path=UPath(base))
