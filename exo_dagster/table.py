"""StoredTable: a step's output as it sits in storage, read lazily."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .storage import first_path, polars_options


@dataclass(frozen=True)
class StoredTable:
    """Parquet file(s) (local paths or fsspec URLs) that downstream steps scan, never copy.

    `path` is one path or a tuple of paths (a reference to source files a step passed through).
    """

    path: str | tuple[str, ...]
    storage_options: dict | None = None
    name: str | None = None  # the step identifier it came from, when known

    def __str__(self) -> str:
        """In text (e.g. a SQL query) a table stands for its view name: its identifier."""
        if self.name is None:
            return self.duckdb_source()
        return self.name if self.name.replace("_", "a").isalnum() else '"' + self.name + '"'

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def is_remote(self) -> bool:
        return "://" in first_path(self.path) and not first_path(self.path).startswith("file://")

    def lazy(self) -> pl.LazyFrame:
        source = self.path if isinstance(self.path, str) else list(self.path)
        return pl.scan_parquet(source, storage_options=polars_options(self.storage_options, first_path(self.path)))

    def collect(self) -> pl.DataFrame:
        return self.lazy().collect()

    def column(self, name: str) -> list:
        frame = self.lazy()
        if name not in frame.collect_schema().names():
            raise KeyError(f"column `{name}` is not in this table; it has: {', '.join(frame.collect_schema().names())}")
        return frame.select(name).collect().to_series().to_list()

    def duckdb_source(self) -> str:
        """SQL text that scans this table in DuckDB straight from Parquet, with no copy through Python."""
        quoted = ["'" + p.replace("'", "''") + "'" for p in self.paths]
        return f"read_parquet({quoted[0]})" if len(quoted) == 1 else f"read_parquet([{', '.join(quoted)}])"
