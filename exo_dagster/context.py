"""StepContext: what a satellite function sees of its run — inputs, tables, its own secrets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import polars as pl

from . import paths
from .table import StoredTable


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

    def path(self, path: str) -> str:
        """A path the user wrote, resolved against the cluster file's folder."""
        return paths.resolve(path, self.base_dir)

    def output_path(self, path: str) -> str:
        """A path to write to, resolved against the data folder."""
        return paths.resolve(path, self.data_dir)

    def table(self, identifier: str) -> StoredTable:
        if identifier not in self.tables:
            raise KeyError(f"step `{self.step}` does not read `{identifier}`; reference it with "
                           f"${{{{ satellites.{identifier}.output }}}}")
        return self.tables[identifier]

    def input_table(self, key: str = "table") -> StoredTable | None:
        """The table given as `input.<key>`, else the previous step's output."""
        value = self.input.get(key)
        if isinstance(value, StoredTable):
            return value
        return self.previous
