"""satellite/exospherehost/read-table: CSV, JSONL, Parquet or Excel files into one table."""

from __future__ import annotations

from typing import Literal

import polars as pl

from exo_dagster import SatelliteConfig, StepContext, StoredTable, duck, satellite

EXTENSIONS = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl",
              "parquet": "parquet", "pq": "parquet", "xlsx": "excel", "xls": "excel"}


class ReadTableConfig(SatelliteConfig):
    format: Literal["auto", "csv", "jsonl", "parquet", "excel"] = "auto"
    path: str | None = None
    separator: str = ","
    sheet: str | None = None
    source_column: str | None = None
    copy_: bool = False  # YAML `copy:`; Parquet is referenced in place unless asked to copy


def _format_of(path: str, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    ext = path.rsplit(".", 1)[-1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"read-table: cannot tell the format of `{path}`; set `format:` to csv, jsonl, parquet or excel")
    return EXTENSIONS[ext]


def _read_csv(ctx: StepContext, path: str, config: ReadTableConfig) -> pl.LazyFrame:
    """CSV through DuckDB, which keeps malformed lines aside (file, line, reason) instead of failing them all."""
    sep = "\t" if path.endswith(".tsv") else config.separator
    with duck.connect(urls=[path]) as con:
        quoted = "'" + path.replace("'", "''") + "'"
        frame = con.execute(f"select * from read_csv({quoted}, header=true, delim=$sep, store_rejects=true)", {"sep": sep}).to_arrow_table()
        rejects = con.execute("select line, error_message from reject_errors order by line").fetchall()
    frame = pl.from_arrow(frame)
    if rejects:
        errors = [f"{path}:{line}: {message}" for line, message in dict(rejects).items()]
        if ctx.on_row_error == "fail":
            raise ValueError(f"read-table: {len(errors)} malformed line(s); first: {errors[0]}")
        ctx.metadata["exo/rows_failed"] = ctx.metadata.get("exo/rows_failed", 0) + len(errors)
        ctx.log.warning(f"read-table: {len(errors)} malformed line(s) in {path}, kept in the `_error` column")
        frame = pl.concat([frame.with_columns(pl.lit(None, pl.Utf8).alias("_error")), pl.DataFrame({"_error": errors})],
                          how="diagonal_relaxed")
    return frame.lazy()


def _scan(ctx: StepContext, path: str, fmt: str, config: ReadTableConfig) -> pl.LazyFrame:
    try:
        if fmt == "csv":
            return _read_csv(ctx, path, config)
        if fmt == "jsonl":
            return pl.scan_ndjson(path)
        if fmt == "excel":
            return pl.read_excel(path, sheet_name=config.sheet).lazy()
        return pl.scan_parquet(path)
    except Exception as exc:  # noqa: BLE001 - name the file, keep the reason
        raise ValueError(f"read-table: cannot read `{path}` as {fmt}: {exc}") from exc


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
    inputs={"paths": "file paths (a column such as ${{ satellites.files.output.path }}); default: the previous step's `path` column"},
    outputs={"*": "the columns of the files"},
)
def read_table(ctx: StepContext, config: ReadTableConfig) -> pl.LazyFrame | StoredTable:
    """Reads CSV, JSONL, Parquet or Excel files (one path, or a column of paths) into one table; Parquet is referenced, not copied."""
    paths = [p if "://" in p else ctx.path(p) for p in _paths(ctx, config)]
    formats = {_format_of(p, config.format) for p in paths}
    if paths and formats == {"parquet"} and not config.copy_ and not config.source_column:
        # The files already are Parquet: downstream steps scan them in place (fingerprinted by the IO manager).
        return StoredTable(paths[0] if len(paths) == 1 else tuple(paths))
    frames = []
    for path in paths:
        frame = _scan(ctx, path, _format_of(path, config.format), config)
        if config.source_column:
            frame = frame.with_columns(pl.lit(path).alias(config.source_column))
        frames.append(frame)
    if not frames:
        return pl.LazyFrame()
    return pl.concat(frames, how="diagonal_relaxed")
