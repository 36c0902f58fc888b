"""satellite/exospherehost/write-table: write a table as Parquet, CSV, JSONL or a DuckDB table."""

from __future__ import annotations

import io
import os
import time
from typing import Literal

import fsspec
import polars as pl
from pydantic import Field, ValidationInfo, field_validator, model_validator
from upath import UPath

from exo_dagster.sdk import (
    SatelliteConfig,
    StepContext,
    allowed_paths,
    retrying,
    satellite,
    sql_text,
    table_write,
    target_lock,
)
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.row_map import KEY_COLUMN
from exo_dagster.sdk.table import StoredTable
from exo_dagster.sdk.table_write import write_parquet_atomic

LOCKED_RETRY = retrying.Retry(attempts=None, delay=0.05, max_delay=1.0, jitter=(1.0, 1.0))
ROW = "__exo_row"
INTERNAL_COLUMNS = (KEY_COLUMN,)  # exo's row identity between steps (llm-complete's batch mode), not user data
FORMATS = {
    "parquet": "parquet",
    "pq": "parquet",
    "csv": "csv",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "duckdb": "duckdb",
    "db": "duckdb",
}


class WriteTableConfig(SatelliteConfig):
    path: str = Field(
        description="Where to write: a file or DuckDB database inside the data folder (relative paths resolve "
        "against it), or a URL."
    )
    format: Literal["auto", "parquet", "csv", "jsonl", "duckdb"] = Field(
        "auto",
        description="The output format; auto: from the extension (.parquet/.pq, .csv, .jsonl/.ndjson, "
        ".duckdb/.db), else Parquet.",
    )
    mode: Literal["overwrite", "append", "upsert"] = Field(
        "overwrite",
        description="Replace the target (its columns and types too), append the rows to it, or "
        "upsert: replace the target's rows whose `key` matches an input row and add the "
        "others. Append and upsert match columns by name: a new column is added (null in "
        "old rows), a missing one is null in the new rows; an empty input changes nothing.",
    )
    key: list[str] = Field(
        [],
        description="The columns that identify a row, for `mode: upsert` (required there): "
        "never null, and unique in the target after every write.",
    )
    on_duplicate: Literal["error", "first", "last"] = Field(
        "error",
        description="For `mode: upsert`, an input that holds one key more than once: `error` refuses the "
        "write naming the key and a value; `first` / `last` keep that key's first / last row "
        "(input order).",
    )
    schema_changes: Literal["refuse", "evolve"] = Field(
        "refuse",
        alias="schema",
        description="For append and upsert, an input column whose type differs from the stored one: `refuse` fails "
        "naming the column and both types, unless every value fits unchanged (an integer within the "
        "stored range, an integer a float holds exactly, a column all null); `evolve` widens the stored "
        "column to the common type (e.g. integer with text: text), old rows converted.",
    )
    table: str | None = Field(
        None, description="The table name, for format duckdb; default: the input's identifier, else `data`."
    )
    storage_options: dict = Field({}, description="fsspec options for a remote target.")

    @field_validator("path")
    @classmethod
    def _inside_data_folder(cls, value: str, info: ValidationInfo) -> str:
        allowed_paths.config_problem(value, info, with_cluster_folder=False)
        return value

    @model_validator(mode="after")
    def _upsert_needs_key(self) -> WriteTableConfig:
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode upsert needs `key: [column, ...]` to match rows on")
        if self.mode != "upsert" and "on_duplicate" in self.model_fields_set:
            raise ValueError("`on-duplicate` applies to `mode: upsert` only (the key's repeats in the input)")
        if self.mode == "overwrite" and "schema_changes" in self.model_fields_set:
            raise ValueError("`schema` applies to append and upsert; overwrite replaces the columns and types")
        return self


def _format(target: str, wanted: str) -> str:
    return wanted if wanted != "auto" else FORMATS.get(target.rsplit(".", 1)[-1].lower(), "parquet")


def _existing(target: str, fs) -> bytes | None:
    if not fs.exists(target):
        return None
    with fs.open(target, "rb") as fh:
        return fh.read()


def _read(data: bytes, fmt: str, typed: bool = True) -> pl.DataFrame:
    """A stored file as a frame; a text file's types are inferred from all of its rows (`typed=False`: a CSV
    file's values as text, exactly as stored)."""
    source = io.BytesIO(data)
    if fmt == "parquet":
        return pl.read_parquet(source)
    if fmt == "csv":
        return pl.read_csv(source, infer_schema_length=None, infer_schema=typed, raise_if_empty=False)
    return pl.read_ndjson(source, infer_schema_length=None) if data.strip() else pl.DataFrame()


def _as_stored(frame: pl.DataFrame, fmt: str, typed: bool = True) -> pl.DataFrame:
    """The rows as the text format will hold them: dates become text, and so on (Parquet: unchanged)."""
    if fmt == "parquet":
        return frame
    return _read((frame.write_csv() if fmt == "csv" else frame.write_ndjson()).encode(), fmt, typed)


def _keyed(new: pl.DataFrame, config: WriteTableConfig) -> pl.DataFrame:
    """The input rows of an upsert, one per key (or WriteRefused naming the key column and a value)."""
    if config.mode != "upsert":
        return new
    problem = table_write.key_problem(new, config.key, "the input", repeats=config.on_duplicate == "error")
    if problem:
        repeats = "repeats in the input" in problem
        hint = "; set `on-duplicate: last` (or `first`) to keep one row per key" if repeats else ""
        raise table_write.WriteRefused(f"write-table refused the upsert: {problem}{hint}. Nothing was written.")
    if config.on_duplicate != "error":
        new = new.unique(subset=config.key, keep=config.on_duplicate, maintain_order=True)
    return new


def _check_stored_keys(stored: pl.DataFrame, config: WriteTableConfig, target: str) -> None:
    if stored.height == 0:  # an empty target holds no key to conflict with
        return
    problem = table_write.key_problem(stored, config.key, f"the target {target}")
    if problem and "is not in" not in problem:
        problem += (
            " (rows written by an append or another tool); upsert keeps the key unique and non-null: "
            "overwrite the target or remove those rows first"
        )
    if problem:
        raise table_write.WriteRefused(f"write-table refused the upsert: {problem}. Nothing was written.")


def _combine(
    new: pl.DataFrame, data: bytes, fmt: str, config: WriteTableConfig, target: str
) -> tuple[pl.DataFrame, dict[str, pl.DataType]]:
    """The target's new content, and its column types, from the stored file and the (keyed) input rows.

    CSV is combined as text: stored fields are written back exactly as they were; the types checked (and
    the keys matched) are those a reader infers from the file."""
    old = _read(data, fmt)
    incoming = _as_stored(new, fmt)
    if config.mode == "upsert":
        _check_stored_keys(old, config, target)
    # a text file's column with no value has no type of its own
    empty = frozenset(c for c in old.columns if old[c].null_count() == old.height) if fmt != "parquet" else frozenset()
    into_new, into_old = table_write.reconcile(
        old.schema, incoming, evolve=config.schema_changes == "evolve", target=target, empty=empty
    )
    schema = {**old.schema, **into_old, **{c: t for c, t in incoming.schema.items() if c not in old.schema}}
    old = old.with_columns(pl.col(c).cast(t, strict=True) for c, t in into_old.items())
    incoming = incoming.with_columns(pl.col(c).cast(t, strict=True) for c, t in into_new.items())
    kept = None
    if config.mode == "upsert" and old.height:  # the stored rows whose key the input does not hold
        kept = old.with_row_index(ROW).join(incoming.select(config.key), on=config.key, how="anti").select(ROW)
    if fmt == "csv":  # text: nothing to cast
        old, incoming = _read(data, fmt, typed=False), _as_stored(new, fmt, typed=False)
    if kept is not None:
        old = old.with_row_index(ROW).join(kept, on=ROW, how="semi", maintain_order="left").drop(ROW)
    return pl.concat([old, incoming], how="diagonal"), schema


def _write_file(frame: pl.LazyFrame | pl.DataFrame, target: str, fmt: str, options: dict) -> None:
    if fmt == "parquet":
        write_parquet_atomic(frame, UPath(target, **options))
        return
    fs, path = fsspec.core.url_to_fs(target, **options)
    eager = frame.collect(engine="streaming") if isinstance(frame, pl.LazyFrame) else frame
    with atomic_write(path, "wb", fs) as fh:
        eager.write_csv(fh) if fmt == "csv" else eager.write_ndjson(fh)


def _write_duckdb(new: pl.DataFrame, database: str, table: str, config: WriteTableConfig) -> tuple[int, dict[str, str]]:
    """Append/upsert check the stored table as files do, then alter (widen, add columns), delete and insert in one
    transaction: an error leaves the table as it was. Returns the table's rows and column types."""
    with _open_duckdb(database) as con:
        _change_duckdb(con, new, database, table, config)
        rows = con.execute(f"select count(*) from {_q(table)}").fetchall()[0][0]
        columns = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns where table_name = ? "
                "order by ordinal_position",
                [table],
            ).fetchall()
        )
    return rows, columns


def _change_duckdb(con, new: pl.DataFrame, database: str, table: str, config: WriteTableConfig) -> None:
    name, where = _q(table), f"{database}#{table}"
    exists = con.execute("select count(*) from information_schema.tables where table_name = ?", [table]).fetchall()[0][
        0
    ]
    if config.mode == "overwrite" or not exists:
        con.register("arrow", new.to_arrow())
        con.execute(f"create or replace table {name} as select * from arrow")
        return
    if new.height == 0:
        return
    stored = con.sql(f"select * from {name} limit 0").pl().schema
    if config.mode == "upsert":
        present = [_q(k) for k in config.key if k in stored]
        keys = con.sql(
            f"select {', '.join(present)} from {name}"
            if len(present) == len(config.key)
            else f"select * from {name} limit 1"
        ).pl()  # a key column missing: named if the table has rows
        _check_stored_keys(keys, config, where)
    into_new, into_old = table_write.reconcile(stored, new, evolve=config.schema_changes == "evolve", target=where)
    new = new.with_columns(pl.col(c).cast(t, strict=True) for c, t in into_new.items())
    con.register("arrow", new.to_arrow())
    types = {row[0]: row[1] for row in con.execute("describe arrow").fetchall()}
    con.execute("begin")
    try:
        for column in into_old:
            con.execute(f"alter table {name} alter column {_q(column)} set data type {types[column]}")
        for column in (c for c in new.columns if c not in stored):
            con.execute(f"alter table {name} add column {_q(column)} {types[column]}")
        if config.mode == "upsert":
            match = " and ".join(f"t.{_q(k)} = a.{_q(k)}" for k in config.key)
            con.execute(f"delete from {name} t where exists (select 1 from arrow a where {match})")
        con.execute(f"insert into {name} by name select * from arrow")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _q(name: str) -> str:
    return sql_text.quote_identifier(name)


def _open_duckdb(database: str, read_only: bool = False):
    """DuckDB allows one writing process per file: wait for a holder outside exo (a DuckDB shell, another
    tool) instead of failing, up to the lock timeout; exo's own runs already queue on the target lock."""
    import duckdb  # loaded by the first write to a DuckDB file, not with the code location

    from exo_dagster.sdk import duck

    return retrying.call(
        lambda: duck.connect(database, read_only=read_only),
        LOCKED_RETRY,
        retry_on=lambda exc: isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower(),
        deadline=time.monotonic() + target_lock.timeout_s(),
    )


@satellite(
    "satellite/exospherehost/write-table",
    config=WriteTableConfig,
    inputs={"table": "the table to write (${{ satellites.X.output }}); default: the previous step's output"},
    outputs={"path": "where it was written", "format": "file format", "rows": "rows in the written table"},
    kinds=("polars", "parquet"),
    overrides=(),  # `input.table` is the data to write, never the config's target `table`
)
def write_table(ctx: StepContext, config: WriteTableConfig) -> pl.DataFrame:
    """Writes its input to a file or DuckDB table (relative paths land in the exo data folder):
    overwrite, append or upsert by key, atomically."""
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
    new = _without_internal(table.lazy(), config)
    if fmt == "duckdb":
        name = config.table or (table.name or "data")
        rows, columns = _write_duckdb(_keyed(new.collect(engine="streaming"), config), target, name, config)
        return pl.DataFrame({"path": [f"{target}#{name}"], "format": [fmt], "rows": [rows]}), columns
    if config.mode == "overwrite" and fmt == "parquet":  # streamed: the input is never held in memory whole
        _write_file(new, target, fmt, config.storage_options)
        rows, schema = int(new.select(pl.len()).collect().item()), new.collect_schema()
        return _status(target, fmt, rows), {n: str(t) for n, t in schema.items()}
    eager = _keyed(new.collect(engine="streaming"), config)
    fs, _ = fsspec.core.url_to_fs(target, **config.storage_options)
    data = _existing(target, fs) if config.mode != "overwrite" else None
    if data is not None and eager.height == 0:  # nothing to add: the file stays byte for byte as it was
        stored = _read(data, fmt)
        return _status(target, fmt, stored.height), {n: str(t) for n, t in stored.schema.items()}
    frame, schema = (eager, eager.schema) if data is None else _combine(eager, data, fmt, config, target)
    _write_file(frame, target, fmt, config.storage_options)
    return _status(target, fmt, frame.height), {n: str(t) for n, t in schema.items()}


def _status(path: str, fmt: str, rows: int) -> pl.DataFrame:
    return pl.DataFrame({"path": [path], "format": [fmt], "rows": [rows]})


def _without_internal(frame: pl.LazyFrame, config: WriteTableConfig) -> pl.LazyFrame:
    """Columns exo adds for its own bookkeeping between steps (`_row_key`) are not written, unless keyed on."""
    internal = [c for c in INTERNAL_COLUMNS if c not in config.key and c in frame.collect_schema().names()]
    return frame.drop(internal) if internal else frame
