"""StoredTable: a step's output as it sits in storage, read lazily."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import polars as pl

from exo_dagster.sdk.storage_options import first_path, polars_options


class _RecentFrames:
    """Small outputs this process just wrote, by path: a downstream step in the same process (the
    in-process executor, a chunk op) reads them from memory instead of re-reading the file. An entry
    is used only while the file's size and mtime still match what was written."""

    MAX_BYTES = 64 * 2**20

    def __init__(self) -> None:
        self._frames: OrderedDict[str, tuple[tuple[int, int], pl.DataFrame]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _stamp(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def put(self, path: str, frame: pl.DataFrame) -> None:
        size = frame.estimated_size()
        stamp = self._stamp(path)
        if stamp is None or size > self.MAX_BYTES // 4:
            return
        with self._lock:
            if path in self._frames:
                self._bytes -= self._frames.pop(path)[1].estimated_size()
            self._frames[path] = (stamp, frame)
            self._bytes += size
            while self._bytes > self.MAX_BYTES and self._frames:
                self._bytes -= self._frames.popitem(last=False)[1][1].estimated_size()

    def get(self, path: str) -> pl.DataFrame | None:
        with self._lock:
            entry = self._frames.get(path)
        if entry is None or self._stamp(path) != entry[0]:
            return None
        return entry[1]


RECENT = _RecentFrames()


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
        if isinstance(self.path, str) and not self.is_remote:
            frame = RECENT.get(self.path)
            if frame is not None:
                return frame.lazy()
        source = self.path if isinstance(self.path, str) else list(self.path)
        return pl.scan_parquet(source, storage_options=polars_options(self.storage_options, first_path(self.path)))

    def collect(self) -> pl.DataFrame:
        if isinstance(self.path, str) and not self.is_remote:
            frame = RECENT.get(self.path)
            if frame is not None:  # a clone (cheap: shared columns), so changing it in place leaves the kept one alone
                return frame.clone()
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
