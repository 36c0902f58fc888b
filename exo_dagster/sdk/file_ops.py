"""The files a file satellite works on: which paths, on which fsspec filesystem, under which row key.

Shared by parse-document, move-file and delete-file, so they take paths the same way as read-table:
`input.paths` (a list or one path), the per-row input (`$${{ satellites.files.output.path }}`), or the
previous step's `path` column.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
import polars as pl

from exo_dagster.sdk import allowed_paths, step_errors
from exo_dagster.sdk.context import StepContext
from exo_dagster.sdk.paths import is_url
from exo_dagster.sdk.storage_options import version_stamp

# Columns of a get-files output that identify a file's version: with them in the row key, a new
# file under an old name is new work, while a re-run over the same listing is served from the cache.
FINGERPRINT_COLUMNS = ("hash", "size", "modified")


def path_rows(ctx: StepContext, column: str, satellite: str) -> pl.DataFrame:
    """One row per file: a `path` column (as given) plus any fingerprint columns the source has."""
    if "paths" in ctx.input:
        given = ctx.input["paths"]
        values = [given] if isinstance(given, str) else list(given or [])
        if not all(isinstance(v, str) for v in values):
            raise step_errors.PermanentError(
                f"{satellite}: `input.paths` must be a path or a list of paths, got {given!r}", config_key="input.paths"
            )
        return pl.DataFrame({"path": values}, schema={"path": pl.Utf8})
    if ctx.rows is not None:
        return _select(ctx.rows, column, satellite, "the per-row input", fallbacks=("path", "paths"))
    if ctx.previous is not None:
        return _select(ctx.previous.lazy(), column, satellite, "the previous step's output", fallbacks=())
    raise ValueError(
        f"{satellite} needs paths: `input.paths: ${{{{ satellites.files.output.path }}}}`, a per-row "
        f"`$${{{{ satellites.files.output.path }}}}`, or a previous step with a `{column}` column"
    )


def _select(frame: pl.LazyFrame, column: str, satellite: str, where: str, fallbacks: tuple[str, ...]) -> pl.DataFrame:
    names = frame.collect_schema().names()
    found = next((c for c in (column, *fallbacks) if c in names), None)
    if found is None and fallbacks and len(names) == 1:
        found = names[0]
    if found is None:
        raise step_errors.PermanentError(
            f"{satellite}: {where} has no `{column}` column (it has: "
            f"{', '.join(names) or 'no columns'}); set `column:` in the config",
            config_key="column",
        )
    extra = [c for c in FINGERPRINT_COLUMNS if c in names and c != found]
    out = frame.select(pl.col(found).cast(pl.Utf8).alias("path"), *[pl.col(c).cast(pl.Utf8) for c in extra])
    return out.collect(engine="streaming")


def with_stat_fingerprint(rows: pl.DataFrame, ctx: StepContext, options: dict) -> pl.DataFrame:
    """Bare paths carry no version: add size+mtime of the files that exist, looked up concurrently."""
    if any(c in rows.columns for c in FINGERPRINT_COLUMNS) or rows.height == 0:
        return rows

    def stat(path: str | None) -> str | None:
        if path is None:
            return None
        try:
            fs, fspath = filesystem(resolve(ctx, path), options)
            info = fs.info(fspath)
        except (OSError, ValueError):
            return None  # missing or unreachable: the satellite reports why, per row
        return version_stamp(info)

    with ThreadPoolExecutor(max_workers=max(1, min(ctx.concurrency, 32))) as pool:
        stamps = list(pool.map(stat, rows["path"].to_list()))
    return rows.with_columns(pl.Series("modified", stamps, dtype=pl.Utf8))


def resolve(ctx: StepContext, path: str) -> str:
    """A path from the data: URLs and absolute paths as they are, relative ones against the cluster folder."""
    return path if is_url(path) else ctx.path(path)


def check_inside(ctx: StepContext, rows: pl.DataFrame, allowed: list[str], satellite: str) -> None:
    """Every local path must lie inside the allowed folders, checked before any file is touched: one path
    outside fails the whole step (nothing moved or deleted), naming the path."""
    outside = [
        p
        for p in rows["path"].to_list()
        if p and allowed_paths.is_local(p) and not allowed_paths.inside(resolve(ctx, p), allowed)
    ]
    if outside:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        refused = allowed_paths.PathOutside(
            f"{satellite}: `{outside[0]}`{more} is outside the allowed folders ({', '.join(allowed)}): the data folder "
            f"and the cluster's folder; the operator may add folders with {allowed_paths.ENV}"
        )
        raise step_errors.at_key(refused, "input.paths") if "paths" in ctx.input else refused  # points at the key


def storage_options(ctx: StepContext, configured: dict) -> dict[str, Any]:
    """Options for remote filesystems: the config's, plus the step's own secrets (lower-cased names)."""
    return {**configured, **{k.lower(): v for k, v in ctx.secrets.items()}}


def filesystem(url: str, options: dict) -> tuple[fsspec.AbstractFileSystem, str]:
    if not is_url(url):
        return fsspec.filesystem("file"), url
    return fsspec.core.url_to_fs(url, **options)


def basename(url: str) -> str:
    return posixpath.basename(url.rstrip("/").replace("\\", "/"))


def result_table(
    rows: pl.DataFrame, results: pl.DataFrame, schema: Mapping[str, pl.DataType | type[pl.DataType]]
) -> pl.DataFrame:
    """One row per input path with the per-row result columns of `schema` (null where a row failed)."""
    out = rows.select("path")
    for name, dtype in schema.items():
        if name != "path":
            column = results[name] if name in results.columns else pl.Series(name, [None] * rows.height)
            out = out.with_columns(column.cast(dtype).alias(name))
    return out
