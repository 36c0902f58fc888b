"""satellite/exospherehost/read-table: CSV, JSONL, Parquet or Excel files into one table.

Bad data gets a located error or a documented choice: a broken JSONL line or Parquet file is named
(file, and line for JSONL); CSV files whose columns differ are an error naming the file and column
unless `union-by-name: true` (then columns are matched by name, missing ones are null, and a column's
type widens to one that holds every file's values: integers to wider integers or floats, anything
mixed with text to text); mixed CRLF/LF line endings are read; `encoding` decodes other charsets.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Literal

import polars as pl
from pydantic import Field, field_validator

from exo_dagster import keys
from exo_dagster.sdk import SatelliteConfig, StepContext, StoredTable, satellite, step_errors

EXTENSIONS = {
    "csv": "csv",
    "tsv": "csv",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json": "jsonl",
    "parquet": "parquet",
    "pq": "parquet",
    "xlsx": "excel",
    "xls": "excel",
}


class ReadTableConfig(SatelliteConfig):
    format: Literal["auto", "csv", "jsonl", "parquet", "excel"] = Field(
        "auto",
        description="The files' format; auto: from each file's extension (.csv/.tsv, .jsonl/.ndjson/.json, "
        ".parquet/.pq, .xlsx/.xls).",
    )
    path: str | None = Field(
        None,
        description="One file to read (relative to the cluster file's folder, or a URL); default: "
        "`input.paths`, else the previous step's `path` column.",
    )
    separator: str = Field(",", description="The CSV field separator (.tsv files always use a tab).")
    sheet: str | None = Field(None, description="The Excel sheet to read by name; default: the first sheet.")
    source_column: str | None = Field(
        None,
        description="Add a column of this name holding each row's source file (Parquet is then read, not referenced).",
    )
    copy_: bool = Field(
        False, description="Copy Parquet sources into the step's output instead of referencing them in place."
    )
    encoding: str = Field(
        "utf-8",
        description="The character encoding of CSV and JSONL files: any Python codec name "
        "(utf-8, utf-16, latin-1, cp1252, ...).",
    )
    union_by_name: bool = Field(
        False,
        description="CSV files with different columns: match columns by name (missing ones null, types "
        "widened) instead of an error naming the file and column.",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding `{value}`; use a name such as utf-8, utf-16, latin-1 or cp1252"
            ) from None
        return value


def _format_of(path: str, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    ext = path.rsplit(".", 1)[-1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(
            f"read-table: cannot tell the format of `{path}`; set `format:` to csv, jsonl, parquet or excel"
        )
    return EXTENSIONS[ext]


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


@contextlib.contextmanager
def _normalised(path: str, encoding: str) -> Iterator[str]:
    """A UTF-8 copy of `path` with `\n` line endings (decoded from `encoding`), in a temporary folder."""
    folder = tempfile.mkdtemp(prefix="exo-read-")
    copy = os.path.join(folder, os.path.basename(path) or "data")
    try:
        try:
            with (
                open(path, encoding=encoding, newline=None) as src,
                open(copy, "w", encoding="utf-8", newline="\n") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
        except UnicodeError as exc:
            raise ValueError(
                f"read-table: `{path}` is not valid {encoding} "
                f"({getattr(exc, 'reason', exc)} at byte {getattr(exc, 'start', '?')}); "
                f"set `encoding:` to the file's encoding (e.g. utf-8, utf-16, latin-1, cp1252)"
            ) from None
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_bom(path: str, encoding: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if _is_utf8(encoding) and head.startswith(_UTF16_BOMS):
        raise ValueError(
            f"read-table: `{path}` starts with a UTF-16 byte order mark but is read as {encoding}; "
            f"set `encoding: utf-16`"
        )


def _read_csv(ctx: StepContext, path: str, config: ReadTableConfig) -> pl.LazyFrame:
    """CSV through DuckDB, which keeps malformed lines aside (file, line, reason) instead of failing them all."""
    sep = "\t" if path.endswith(".tsv") else config.separator
    local = "://" not in path
    if local:
        _check_bom(path, config.encoding)
    if local and not _is_utf8(config.encoding):
        with _normalised(path, config.encoding) as copy:
            return _read_csv_file(ctx, copy, path, sep)
    import duckdb  # loaded by the first CSV read, not with the code location

    try:
        return _read_csv_file(ctx, path, path, sep)
    except duckdb.InvalidInputException as exc:
        if not (local and "sniffing" in str(exc) and _mixed_line_endings(path)):
            raise
    with _normalised(path, config.encoding) as copy:  # CRLF and LF in one file: DuckDB's sniffer gives up
        return _read_csv_file(ctx, copy, path, sep)


def _mixed_line_endings(path: str) -> bool:
    with open(path, "rb") as fh:
        data = fh.read(1 << 24)
    crlf = data.count(b"\r\n")
    return 0 < crlf < data.count(b"\n")


def _read_csv_file(ctx: StepContext, source: str, path: str, sep: str) -> pl.LazyFrame:
    """Read `source` (the file, or a normalised copy of it); messages name `path`, the file the user gave."""
    from exo_dagster.sdk import duck

    with duck.connect(urls=[source]) as con:
        quoted = "'" + source.replace("'", "''") + "'"
        frame = con.sql(
            f"select * from read_csv({quoted}, header=true, delim=$sep, store_rejects=true)", params={"sep": sep}
        ).to_arrow_table()
        rejects = con.execute("select line, error_message from reject_errors order by line").fetchall()
    frame = pl.from_arrow(frame)
    assert isinstance(frame, pl.DataFrame), "an Arrow table makes a DataFrame"
    if rejects:
        errors = [f"{path}:{line}: {message}" for line, message in dict(rejects).items()]
        unicode = [e for e in errors if "Invalid unicode" in e]
        if unicode:
            raise ValueError(
                f"read-table: `{path}` is not valid utf-8 (first at line {unicode[0].split(':')[-2]}); "
                f"set `encoding:` to the file's encoding (e.g. utf-16, latin-1, cp1252)"
            )
        if ctx.on_row_error == "fail":
            raise ValueError(f"read-table: {len(errors)} malformed line(s); first: {errors[0]}")
        ctx.metadata[keys.ROWS_FAILED] = ctx.metadata.get(keys.ROWS_FAILED, 0) + len(errors)
        ctx.log.warning(f"read-table: {len(errors)} malformed line(s) in {path}, kept in the `_error` column")
        frame = pl.concat(
            [frame.with_columns(pl.lit(None, pl.Utf8).alias("_error")), pl.DataFrame({"_error": errors})],
            how="diagonal_relaxed",
        )
    return frame.lazy()


def _read_jsonl(path: str, config: ReadTableConfig) -> pl.LazyFrame:
    """Eagerly, so a broken line fails here, named (file:line), not later in another step."""
    if "://" in path:
        return pl.read_ndjson(path).lazy()
    _check_bom(path, config.encoding)
    with (
        _normalised(path, config.encoding) if not _is_utf8(config.encoding) else contextlib.nullcontext(path) as source
    ):
        try:
            with open(source, encoding="utf-8") as fh:
                if not any(line.strip() for line in fh):
                    return pl.LazyFrame()  # an empty file: no rows
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"read-table: `{path}` is not valid utf-8 (byte {exc.start}); set `encoding:` to the file's encoding"
            ) from None
        try:
            return pl.read_ndjson(source).lazy()
        except Exception as exc:
            line, reason = _bad_json_line(source)
            where = f"`{path}` line {line}" if line else f"`{path}`"
            raise ValueError(f"read-table: {where} is not valid JSON: {reason or exc}") from None


def _bad_json_line(path: str) -> tuple[int | None, str | None]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return number, exc.msg + f" (column {exc.colno})"
            if not isinstance(value, dict):
                return number, f"expected a JSON object, got {type(value).__name__}"
    return None, None


def _check_parquet(path: str) -> None:
    """Read the footer now: a truncated or non-Parquet file fails here, named, and no reference to it is stored.
    A local file's footer is parsed by Polars (as pyarrow's read_metadata would, without loading pyarrow:
    about 0.2 s a process); a remote one by pyarrow, which seeks to the footer instead of reading the file."""
    _check_readable(path)
    try:
        if "://" in path:
            import fsspec
            import pyarrow.parquet as pq

            with fsspec.open(path, "rb") as fh:
                pq.read_metadata(fh)
        else:
            pl.read_parquet_schema(path)
    except FileNotFoundError:
        raise step_errors.MissingFile(path, "read-table") from None
    except Exception as exc:
        raise ValueError(f"read-table: `{path}` is not a readable Parquet file: {exc}") from None


def _check_readable(path: str) -> None:
    """A local file that is not there, or not readable, is said so (with its absolute path) before any reader
    turns it into a parse error."""
    if "://" in path:
        return
    if not os.path.exists(path):
        raise step_errors.MissingFile(os.path.abspath(path), "read-table")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"read-table: no permission to read {os.path.abspath(path)}")


def _scan(ctx: StepContext, path: str, fmt: str, config: ReadTableConfig) -> pl.LazyFrame:
    _check_readable(path)
    try:
        if fmt == "csv":
            return _read_csv(ctx, path, config)
        if fmt == "jsonl":
            return _read_jsonl(path, config)
        if fmt == "excel":
            return pl.read_excel(path, sheet_name=config.sheet).lazy()
        _check_parquet(path)
        return pl.scan_parquet(path)
    except ValueError as exc:
        if str(exc).startswith("read-table:"):
            raise
        raise ValueError(f"read-table: cannot read `{path}` as {fmt}: {exc}") from exc
    except FileNotFoundError:  # a remote file that is not there
        raise step_errors.MissingFile(path, "read-table") from None
    except PermissionError:
        raise
    except Exception as exc:
        raise ValueError(f"read-table: cannot read `{path}` as {fmt}: {exc}") from exc


def _drift(frames: list[tuple[str, str, pl.LazyFrame]]) -> str | None:
    """Why CSV files do not share one schema (a column missing, extra, or of another type), or None.
    A column that is empty (all null) in a file fits any type."""
    csvs = [(p, f.collect()) for p, fmt, f in frames if fmt == "csv"]
    if len(csvs) < 2:
        return None
    first_path, first = csvs[0]
    base = {n: t for n, t in first.schema.items() if n != "_error"}
    for path, frame in csvs[1:]:
        schema = {n: t for n, t in frame.schema.items() if n != "_error"}
        for name in base:
            if name not in schema:
                return f"`{path}` has no column `{name}` (which `{first_path}` has)"
        for name, dtype in schema.items():
            if name not in base:
                return f"`{path}` has a column `{name}` that `{first_path}` does not have"
            empty = frame[name].null_count() == frame.height or first[name].null_count() == first.height
            if dtype != base[name] and not empty:
                return f"column `{name}` is {dtype} in `{path}` but {base[name]} in `{first_path}`"
    return None


def _paths(ctx: StepContext, config: ReadTableConfig) -> list[str]:
    if config.path:
        return [config.path]
    if "paths" in ctx.input:
        given = ctx.input["paths"]
        return [given] if isinstance(given, str) else list(given)
    if ctx.previous is not None:
        return ctx.previous.column("path")
    raise ValueError("read-table needs `config.path`, `input.paths`, or a previous step with a `path` column")


@satellite(
    "satellite/exospherehost/read-table",
    config=ReadTableConfig,
    inputs={
        "paths": (
            "file paths (a column such as ${{ satellites.files.output.path }}); default: the previous step's "
            "`path` column"
        )
    },
    outputs={"*": "the columns of the files"},
)
def read_table(ctx: StepContext, config: ReadTableConfig) -> pl.LazyFrame | StoredTable:
    """Reads CSV, JSONL, Parquet or Excel files (one path, or a column of paths) into one table;
    Parquet is referenced, not copied."""
    given = "path" if config.path else "input.paths" if "paths" in ctx.input else None
    try:
        return _read(ctx, config)
    except Exception as exc:
        if given:  # a failure points at the key that named the files
            step_errors.at_key(exc, given)
        raise


def _read(ctx: StepContext, config: ReadTableConfig) -> pl.LazyFrame | StoredTable:
    paths = [p if "://" in p else ctx.path(p) for p in _paths(ctx, config)]
    formats = {_format_of(p, config.format) for p in paths}
    if paths and formats == {"parquet"} and not config.copy_ and not config.source_column:
        # The files already are Parquet: downstream steps scan them in place (fingerprinted by the IO manager).
        for path in paths:
            _check_parquet(path)
        return StoredTable(paths[0] if len(paths) == 1 else tuple(paths))
    frames = []
    for path in paths:
        fmt = _format_of(path, config.format)
        frame = _scan(ctx, path, fmt, config)
        if config.source_column:
            frame = frame.with_columns(pl.lit(path).alias(config.source_column))
        frames.append((path, fmt, frame))
    if not frames:
        return pl.LazyFrame()
    if not config.union_by_name:
        problem = _drift(frames)
        if problem:
            raise ValueError(
                f"read-table: the CSV files do not share one schema: {problem}; fix the files, or set "
                f"`union-by-name: true` to match columns by name (missing ones null, types widened)"
            )
    return pl.concat(_typed_empty_columns(frames), how="diagonal_relaxed")


def _typed_empty_columns(frames: list[tuple[str, str, pl.LazyFrame]]) -> list[pl.LazyFrame]:
    """A CSV column with no value in one file is read as text; give it the type the other files have, so an
    empty column never turns numbers into strings."""
    csvs = {i: f.collect() for i, (_, fmt, f) in enumerate(frames) if fmt == "csv"}
    if len(csvs) < 2:
        return [f for _, _, f in frames]
    typed: dict[str, pl.DataType] = {}
    for frame in csvs.values():
        for name, dtype in frame.schema.items():
            if name not in typed and frame[name].null_count() < frame.height:
                typed[name] = dtype
    out = []
    for i, (_, _, frame) in enumerate(frames):
        if i in csvs:
            eager = csvs[i]
            empty = [
                n
                for n in eager.columns
                if n in typed and eager[n].null_count() == eager.height and eager.schema[n] != typed[n]
            ]
            frame = eager.with_columns([pl.col(n).cast(typed[n]) for n in empty]).lazy()
        out.append(frame)
    return out
