"""StepContext: what a satellite function sees of its run — inputs, tables, its own secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from exo_dagster import keys
from exo_dagster.sdk import paths
from exo_dagster.sdk.table import StoredTable


@dataclass
class StepContext:
    """Per-step view handed to `satellite(ctx, config)`.

    `input` holds the step's resolved (non per-row) input values; `rows` is the per-row input
    as a table when the step uses `$${{ }}`; `tables` are upstream outputs by identifier;
    `previous` is the output this step follows (its predecessor in list order).
    """

    cluster: str
    step: str
    run_id: str
    input: dict[str, Any]
    rows: pl.LazyFrame | None
    tables: dict[str, StoredTable]
    previous: StoredTable | None
    secrets: Mapping[str, str] = field(repr=False)
    base_dir: str = "."
    data_dir: str = field(default_factory=paths.data_dir)
    log: Any = field(default_factory=lambda: logging.getLogger("exo_dagster"))
    # per-row work: (satellite id, version, config) identity, options from the step spec, a cache
    identity: tuple[str, str, dict] = ("satellite/exo/unknown", "0", {})
    concurrency: int = 8
    on_row_error: str = "collect"
    cache_path: str | None = field(default=None, repr=False)  # may be a postgresql:// URL with a password
    metadata: dict[str, Any] = field(default_factory=dict)
    # secret values this step can see: masked in every row result before it is cached or returned
    hidden: list[str] = field(default_factory=list, repr=False)
    # the run this one re-executes (Dagster's root run; else run_id): a batch delivered in it is not sent again
    root_run_id: str | None = None

    def map_rows(
        self,
        fn: Callable[[dict, str], Any],
        rows: pl.DataFrame | pl.LazyFrame | None = None,
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
    ) -> pl.DataFrame:
        """Run `fn(row, idempotency_key)` once per row (default: the step's per-row input), concurrently,
        skipping rows the cache already holds; per-row failures land in `_error`. See fanout.map_rows."""
        from exo_dagster.sdk.row_cache import open_cache
        from exo_dagster.sdk.row_map import RowStats, map_rows

        rows = self.rows if rows is None else rows
        if rows is None:
            raise ValueError(
                f"step `{self.step}` has no per-row input; use `$${{{{ satellites.X.output.col }}}}` in `input:`"
            )
        stats = RowStats()
        cache = open_cache(self.cache_path) if self.cache_path else None
        try:
            return map_rows(
                fn,
                rows,
                identity=self.identity,
                step=self.step,
                cache=cache,
                concurrency=concurrency or self.concurrency,
                on_row_error=self.on_row_error,
                batch_size=batch_size,
                stats=stats,
                mask=self._mask_result,
            )
        finally:
            if cache is not None:
                cache.close()
            self.metadata.update(stats.metadata())
            if stats.errors:
                self.metadata[keys.ROW_ERRORS] = "\n".join(stats.errors)
                self.log.warning(f"{stats.failed} row(s) failed in step `{self.step}`; see the `_error` column")

    def describe_output(
        self, rows: int, columns: Mapping[str, Any], *, uri: str | None = None, table_name: str | None = None
    ) -> None:
        """Report the table this step made elsewhere (write-table's target) as the asset's metadata, by
        Dagster's conventions: `dagster/row_count`, `dagster/column_schema` ({column: type}), and
        `dagster/uri` (a file or URL) or `dagster/table_name` (a database table). The IO manager then
        adds only what is missing about the stored output."""
        self.metadata[keys.ROW_COUNT] = int(rows)
        self.metadata[keys.COLUMN_SCHEMA] = {str(name): str(dtype) for name, dtype in dict(columns).items()}
        if table_name is not None:
            self.metadata[keys.TABLE_NAME] = table_name
        if uri is not None:
            self.metadata[keys.URI] = uri

    def _mask_result(self, result: Any) -> Any:
        if not self.hidden:
            return result
        walk = self.__dict__.get("_result_masker")
        if walk is None:  # built once per step: every row's result passes here
            from exo_dagster.sdk.masking import value_masker

            walk = self.__dict__["_result_masker"] = value_masker(self.hidden)
        return walk(result)

    def path(self, path: str) -> str:
        """A path the user wrote, resolved against the cluster file's folder."""
        return paths.resolve(path, self.base_dir)

    def output_path(self, path: str) -> str:
        """A path to write to, resolved against the data folder."""
        return paths.resolve(path, self.data_dir)

    def table(self, identifier: str) -> StoredTable:
        if identifier not in self.tables:
            raise KeyError(
                f"step `{self.step}` does not read `{identifier}`; reference it with "
                f"${{{{ satellites.{identifier}.output }}}}"
            )
        return self.tables[identifier]

    def input_table(self, key: str = "table") -> StoredTable | None:
        """The table given as `input.<key>`, else the previous step's output."""
        value = self.input.get(key)
        if isinstance(value, StoredTable):
            return value
        return self.previous
