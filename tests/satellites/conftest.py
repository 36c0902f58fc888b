"""Run one satellite function directly with a real StepContext over real files."""

from __future__ import annotations

import polars as pl
import pytest

from exo_dagster import StepContext, StoredTable


@pytest.fixture
def make_ctx(tmp_path):
    def make(*, input=None, tables=None, previous=None, secrets=None) -> StepContext:
        return StepContext(
            cluster="t/sat",
            step="s",
            run_id="r",
            input=input or {},
            rows=None,
            tables=tables or {},
            previous=previous,
            secrets=secrets or {},
            base_dir=str(tmp_path),
            data_dir=str(tmp_path / "data"),
        )

    return make


@pytest.fixture
def stored(tmp_path):
    def store(name: str, frame: pl.DataFrame) -> StoredTable:
        path = tmp_path / f"{name}.parquet"
        frame.write_parquet(path)
        return StoredTable(str(path), name=name)

    return store
