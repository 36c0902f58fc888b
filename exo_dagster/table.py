"""StoredTable: a step's output as it sits in storage, read lazily."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class StoredTable:
    """A Parquet file (local path or fsspec URL) that downstream steps scan, never copy."""

    path: str
    storage_options: dict | None = None
    name: str | None = None  # the step identifier it came from, when known

    def __str__(self) -> str:
        """In text (e.g. a SQL query) a table stands for its view name: its identifier."""
        if self.name is None:
            return self.duckdb_source()
        return self.name if self.name.replace("_", "a").isalnum() else '"' + self.name + '"'

    def lazy(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.path, storage_options=self.storage_options)

    def collect(self) -> pl.DataFrame:
        return self.lazy().collect()

    def column(self, name: str) -> list:
        frame = self.lazy()
        if name not in frame.collect_schema().names():
            raise KeyError(f"column `{name}` is not in this table; it has: {', '.join(frame.collect_schema().names())}")
        return frame.select(name).collect().to_series().to_list()

    def duckdb_source(self) -> str:
        """SQL text that scans this table in DuckDB with no copy through Python."""
        return "read_parquet(" + "'" + self.path.replace("'", "''") + "')"
