"""Writing what a satellite returns as one Parquet file, atomically (readers never see half a file)."""

from __future__ import annotations

import sys
from typing import Any

import polars as pl
from upath import UPath

from exo_dagster.sdk import paths
from exo_dagster.sdk.atomic_write import atomic_path, atomic_write
from exo_dagster.sdk.internal import step_limit
from exo_dagster.sdk.step_errors import PermanentError
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
    raise TypeError(
        "a satellite must return a table (polars DataFrame/LazyFrame, DuckDB relation or list of dicts), got "
        f"{type(obj).__name__}"
    )


def write_parquet_atomic(obj: Any, path: UPath) -> None:
    """Write to a temporary name beside the target, then rename: readers never see half a file. A step's output
    is written within its time limit (a lazy one computes here), which ends with it (step_limit.covering)."""
    with step_limit.covering(obj):
        _write_parquet_atomic(obj, path)


def _write_parquet_atomic(obj: Any, path: UPath) -> None:
    frame = to_frame(obj)
    if not paths.is_url(str(path)) and not isinstance(frame, pl.LazyFrame):
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)  # polars DataFrame and DuckDB relation alike
        return
    if paths.is_url(str(path)):
        frame = (
            frame.collect(engine="streaming")
            if isinstance(frame, pl.LazyFrame)
            else (frame.pl() if is_relation(frame) else frame)
        )
    with atomic_write(path, "wb") as fh:
        if isinstance(frame, pl.LazyFrame):
            # Into a handle we own: given a path, Polars may still create the file after an error is raised.
            frame.sink_parquet(fh)
        else:
            frame.write_parquet(fh)


# --- What append and upsert may do to a stored table (write-table's semantics) ---------------------------


class WriteRefused(PermanentError):
    """A write that would break the target's key or retype its stored columns; the target is left as it was."""


def _value(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def key_problem(frame: pl.DataFrame, key: list[str], where: str, *, repeats: bool = True) -> str | None:
    """Why `key` does not identify each row of `frame` (a column missing, a null, a repeat), else None."""
    missing = [k for k in key if k not in frame.columns]
    if missing:
        columns = ", ".join(frame.columns) or "none"
        return f"upsert key column `{missing[0]}` is not in {where} (its columns: {columns}); fix `key:`"
    nulls = frame.select(pl.col(k).null_count() for k in key).row(0)
    for k, count in zip(key, nulls):
        if count:
            return (
                f"upsert key column `{k}` is null in {count} row(s) of {where}; every row needs a key: "
                f"fill it, or filter those rows out first (e.g. `where {k} is not null` in a sql step)"
            )
    repeated = frame.group_by(key).len(name="_times").filter(pl.col("_times") > 1) if repeats else frame.head(0)
    if repeated.height:
        sample = repeated.sort(key).row(0, named=True)
        value = ", ".join(f"{k}={_value(sample[k])}" for k in key)
        return (
            f"upsert key ({', '.join(key)}) repeats in {where}: {value} appears {sample['_times']} times "
            f"({repeated.height} key value(s) repeat)"
        )
    return None


def _bits(dtype: pl.DataType) -> int:
    cls = dtype if isinstance(dtype, type) else type(dtype)
    return int("".join(ch for ch in cls.__name__ if ch.isdigit()) or 0)


def _int_bounds(column: pl.Series) -> tuple[int, int]:
    """The smallest and the largest value of an integer column that holds at least one."""
    lowest, highest = column.min(), column.max()
    assert isinstance(lowest, int) and isinstance(highest, int), "an integer column with a value has int bounds"
    return lowest, highest


def _fits(column: pl.Series, stored: pl.DataType) -> bool:
    """Whether every incoming value goes into a stored column of type `stored` unchanged: integers within its
    range, integers a float holds exactly, a decimal with no fewer digits, a finer time unit, ..."""
    have = column.dtype
    if have == stored or column.null_count() == column.len():
        return True  # an entirely null (or empty) column holds nothing to lose
    if have.is_integer() and stored.is_integer():  # every value within the stored type's range
        bits = _bits(stored)
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if stored.is_signed_integer() else (0, 2**bits - 1)
        lowest, highest = _int_bounds(column)
        return low <= lowest and highest <= high
    if have.is_integer() and stored.is_float():
        exact = 2 ** (53 if stored == pl.Float64 else 24)  # integers a float holds exactly
        lowest, highest = _int_bounds(column)
        return -exact <= lowest and highest <= exact
    if have == pl.Float32 and stored == pl.Float64:
        return True
    if isinstance(have, pl.Decimal) and isinstance(stored, pl.Decimal):
        digits = (stored.precision or 38) - stored.scale, (have.precision or 38) - have.scale
        return stored.scale >= have.scale and digits[0] >= digits[1]
    if isinstance(have, pl.Datetime) and isinstance(stored, pl.Datetime):  # another zone or a finer unit: same instants
        units = ["ms", "us", "ns"]
        return (have.time_zone is None) == (stored.time_zone is None) and units.index(stored.time_unit) >= units.index(
            have.time_unit
        )
    if have == pl.Date and isinstance(stored, pl.Datetime):
        return stored.time_zone is None
    return (isinstance(have, (pl.Categorical, pl.Enum)) and stored == pl.String) or (
        have == pl.String and isinstance(stored, pl.Categorical)
    )


def _wider(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    """Polars' common supertype of two column types (integers to wider ones or floats, anything with text to
    text), or None where there is none."""
    try:
        both = [pl.DataFrame(schema={"c": a}), pl.DataFrame(schema={"c": b})]
        return pl.concat(both, how="vertical_relaxed").schema["c"]
    except pl.exceptions.PolarsError:
        return None


def reconcile(
    stored: dict[str, pl.DataType],
    incoming: pl.DataFrame,
    *,
    evolve: bool,
    target: str,
    empty: frozenset[str] = frozenset(),
) -> tuple[dict[str, pl.DataType], dict[str, pl.DataType]]:
    """The casts that make `incoming` fit the stored columns: (for the incoming rows, for the stored rows).

    Same type, or incoming values that fit unchanged (`_fits`): the stored type stays. Otherwise the stored
    column would be retyped: refused (WriteRefused names each such column and both types), or with `evolve`
    both sides are cast to their supertype. `empty`: stored columns with no value (a text file's all-empty
    column), which take the incoming type, as a column of type Null does. A column on one side only needs no
    cast: it is null in the other side's rows."""
    into_new: dict[str, pl.DataType] = {}
    into_old: dict[str, pl.DataType] = {}
    refused: list[str] = []
    for name, have in incoming.schema.items():
        if name not in stored or have == stored[name]:
            continue
        if name in empty or stored[name] == pl.Null:
            into_old[name] = have
        elif _fits(incoming.get_column(name), stored[name]):
            into_new[name] = stored[name]
        elif evolve and (wider := _wider(stored[name], have)) is not None:
            into_new[name] = into_old[name] = wider
        else:
            refused.append(f"`{name}` is {stored[name]} in the target and {have} in the input")
    if refused:
        fix = (
            "these types have no common type to widen to: cast the input column in a sql step"
            if evolve
            else "cast the input column to the stored type in a sql step (e.g. `cast(col as BIGINT)`), or set "
            "`schema: evolve` to widen the stored column (old rows converted)"
        )
        raise WriteRefused(
            f"write-table refused to change the type of a stored column of {target}: "
            f"{'; '.join(refused)}. Nothing was written; {fix}"
        )
    return {k: v for k, v in into_new.items() if incoming.schema[k] != v}, into_old
