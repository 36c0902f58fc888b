"""satellite/exospherehost/write-table: write a table as Parquet, CSV, JSONL or a DuckDB table."""

from __future__ import annotations

import os
import time
from typing import Literal

import fsspec
import polars as pl
from pydantic import Field, ValidationInfo, field_validator, model_validator
from upath import UPath

from exo_dagster.sdk import SatelliteConfig, StepContext, satellite
from exo_dagster.sdk import allowed_paths
from exo_dagster.sdk import retrying
from exo_dagster.sdk import sql_text
from exo_dagster.sdk import target_lock
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.table_write import write_parquet_atomic
from exo_dagster.sdk.table import StoredTable

LOCKED_RETRY = retrying.Retry(attempts=None, delay=0.05, max_delay=1.0, jitter=(1.0, 1.0))
FORMATS = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "duckdb": "duckdb", "db": "duckdb"}


class WriteTableConfig(SatelliteConfig):
    path: str = Field(
        description="Where to write: a file or DuckDB database inside the data folder (relative paths resolve "
                    "against it), or a URL.")
    format: Literal["auto", "parquet", "csv", "jsonl", "duckdb"] = Field(
        "auto", description="The output format; auto: from the extension (.parquet/.pq, .csv, .jsonl/.ndjson, "
                            ".duckdb/.db), else Parquet.")
    mode: Literal["overwrite", "append", "upsert"] = Field(
        "overwrite", description="Replace the target, append the rows to it, or upsert: replace rows whose `key` "
                                 "matches and add the others.")
    key: list[str] = Field([], description="The columns that identify a row, for `mode: upsert` (required there).")
    table: str | None = Field(
        None, description="The table name, for format duckdb; default: the input's identifier, else `data`.")
    storage_options: dict = Field({}, description="fsspec options for a remote target.")

    @field_validator("path")
    @classmethod
    def _inside_data_folder(cls, value: str, info: ValidationInfo) -> str:
        allowed_paths.config_problem(value, info, with_cluster_folder=False)
        return value

    @model_validator(mode="after")
    def _upsert_needs_key(self) -> "WriteTableConfig":
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode upsert needs `key: [column, ...]` to match rows on")
        return self


def _format(target: str, wanted: str) -> str:
    return wanted if wanted != "auto" else FORMATS.get(target.rsplit(".", 1)[-1].lower(), "parquet")


def _existing(target: str, fmt: str, fs) -> pl.DataFrame | None:
    if not fs.exists(target):
        return None
    with fs.open(target, "rb") as fh:
        data = fh.read()
    import io

    return {"parquet": pl.read_parquet, "csv": pl.read_csv, "jsonl": pl.read_ndjson}[fmt](io.BytesIO(data))


def _combine(new: pl.LazyFrame, old: pl.DataFrame | None, config: WriteTableConfig) -> pl.LazyFrame:
    if old is None or config.mode == "overwrite":
        return new
    if config.mode == "append":
        return pl.concat([old.lazy(), new], how="diagonal_relaxed")
    kept = old.lazy().join(new.select(config.key).unique(), on=config.key, how="anti")
    return pl.concat([kept, new], how="diagonal_relaxed")


def _write_file(frame: pl.LazyFrame, target: str, fmt: str, options: dict) -> None:
    if fmt == "parquet":
        write_parquet_atomic(frame, UPath(target, **options))
        return
    fs, path = fsspec.core.url_to_fs(target, **options)
    eager = frame.collect(engine="streaming")
    with atomic_write(path, "wb", fs) as fh:
        eager.write_csv(fh) if fmt == "csv" else eager.write_ndjson(fh)


def _write_duckdb(frame: pl.LazyFrame, database: str, table: str, config: WriteTableConfig) -> None:
    name = sql_text.quote_identifier(table)
    with _open_duckdb(database) as con:
        con.register("arrow", frame.collect(engine="streaming").to_arrow())
        con.execute("begin")
        exists = con.execute("select count(*) from information_schema.tables where table_name = ?", [table]).fetchone()[0]
        if config.mode == "overwrite" or not exists:
            con.execute(f"create or replace table {name} as select * from arrow")
        elif config.mode == "append":
            con.execute(f"insert into {name} by name select * from arrow")
        else:
            match = " and ".join(f"t.{sql_text.quote_identifier(k)} is not distinct from a.{sql_text.quote_identifier(k)}"
                                 for k in config.key)
            con.execute(f"delete from {name} t where exists (select 1 from arrow a where {match})")
            con.execute(f"insert into {name} by name select * from arrow")
        con.execute("commit")


def _open_duckdb(database: str, read_only: bool = False):
    """DuckDB allows one writing process per file: wait for a holder outside exo (a DuckDB shell, another
    tool) instead of failing, up to the lock timeout; exo's own runs already queue on the target lock."""
    import duckdb  # loaded by the first write to a DuckDB file, not with the code location

    from exo_dagster.sdk import duck

    return retrying.call(lambda: duck.connect(database, read_only=read_only), LOCKED_RETRY,
                         retry_on=lambda exc: isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower(),
                         deadline=time.monotonic() + target_lock.timeout_s())


@satellite(
    "satellite/exospherehost/write-table",
    config=WriteTableConfig,
    inputs={"table": "the table to write (${{ satellites.X.output }}); default: the previous step's output"},
    outputs={"path": "where it was written", "format": "file format", "rows": "rows in the written table"},
    kinds=("polars", "parquet"),
)
def write_table(ctx: StepContext, config: WriteTableConfig) -> pl.DataFrame:
    """Writes its input to a file or DuckDB table (relative paths land in the exo data folder): overwrite, append or upsert by key, atomically."""
    table = ctx.input_table("table")
    if not isinstance(table, StoredTable):
        raise ValueError("write-table needs `input.table: ${{ satellites.X.output }}` or a previous step")
    target = allowed_paths.check(ctx.output_path(config.path), allowed_paths.roots(ctx.data_dir), "write-table `path`")
    fmt = _format(target, config.format)
    if "://" not in target:
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    # one writer at a time: append/upsert read the target and write it back (see exo_dagster/sdk/target_lock.py)
    with target_lock.locked(target, data_dir=ctx.data_dir):
        result, columns = _write(table, target, fmt, config)
    # the asset's metadata describes the table written, not this one-row status
    path, rows = result["path"][0], result["rows"][0]
    if fmt == "duckdb":
        ctx.describe_output(rows, columns, uri=target, table_name=path.rsplit("#", 1)[1])
    else:
        ctx.describe_output(rows, columns, uri=path)
    return result


def _write(table: StoredTable, target: str, fmt: str, config: WriteTableConfig) -> tuple[pl.DataFrame, dict[str, str]]:
    """The one-row status (path, format, rows of the whole target) and the target's columns."""
    new = table.lazy()
    if fmt == "duckdb":
        name = config.table or (table.name or "data")
        _write_duckdb(new, target, name, config)
        with _open_duckdb(target, read_only=True) as con:
            rows = con.execute(f"select count(*) from {sql_text.quote_identifier(name)}").fetchone()[0]
            columns = {c: t for c, t in con.execute(
                "select column_name, data_type from information_schema.columns where table_name = ? order by ordinal_position",
                [name]).fetchall()}
        return pl.DataFrame({"path": [f"{target}#{name}"], "format": [fmt], "rows": [rows]}), columns
    fs, _ = fsspec.core.url_to_fs(target, **config.storage_options)
    frame = _combine(new, _existing(target, fmt, fs) if config.mode != "overwrite" else None, config)
    if config.mode == "overwrite" and fmt == "parquet":
        _write_file(frame, target, fmt, config.storage_options)
        rows = int(new.select(pl.len()).collect().item())
        schema = new.collect_schema()
    else:
        eager = frame.collect(engine="streaming")
        _write_file(eager.lazy(), target, fmt, config.storage_options)
        rows, schema = eager.height, eager.schema
    return pl.DataFrame({"path": [target], "format": [fmt], "rows": [rows]}), {n: str(t) for n, t in schema.items()}
