"""satellite/exospherehost/delete-file: delete files on any fsspec storage, idempotently.

Deleting is a side effect, so a re-run must be safe: a file that is already gone is `missing`
(a success with the default `missing-ok: true`), and rows an earlier run finished come from the
row cache without touching storage.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field

from exo_dagster.sdk import SatelliteConfig, StepContext, allowed_paths, satellite
from exo_dagster.sdk import file_ops as _files

OUTPUT_SCHEMA = {"path": pl.Utf8, "status": pl.Utf8, "_error": pl.Utf8}


class DeleteFileConfig(SatelliteConfig):
    missing_ok: bool = Field(
        True, description="A file that is already gone counts as done (`missing`); false: that row's `_error`."
    )
    column: str = Field(
        "path", description="The column holding the file paths or URLs (of the per-row input or the previous step)."
    )
    storage_options: dict = Field(
        {}, description="fsspec options for remote storage (the step's secrets are added, names lower-cased)."
    )


@satellite(
    "satellite/exospherehost/delete-file",
    config=DeleteFileConfig,
    inputs={
        "paths": "file paths or URLs (${{ satellites.files.output.path }}, or per row $${{ ... }}); "
        "default: the previous step's `path` column"
    },
    outputs={
        "path": "the file, as given",
        "status": "deleted, or missing (it was already gone)",
        "_error": "why this file could not be deleted (null when it was)",
    },
    kinds=("polars", "file"),
)
def delete_file(ctx: StepContext, config: DeleteFileConfig) -> pl.DataFrame:
    """Deletes each file (folders are refused). A file that is already gone is `missing`: a success, unless
    `missing-ok: false`, where it is that row's `_error` (rows an earlier run deleted still come from the cache)."""
    options = _files.storage_options(ctx, config.storage_options)
    rows = _files.with_stat_fingerprint(_files.path_rows(ctx, config.column, "delete-file"), ctx, options)
    _files.check_inside(ctx, rows, allowed_paths.roots(ctx.data_dir, ctx.base_dir), "delete-file")

    def delete_one(row: dict, key: str) -> dict:
        path = row["path"]
        if not path:
            raise ValueError("empty path")
        fs, fspath = _files.filesystem(_files.resolve(ctx, path), options)
        if not fs.exists(fspath):
            if config.missing_ok:
                return {"status": "missing"}
            raise FileNotFoundError(f"`{path}` does not exist (set `missing-ok: true` to accept that)")
        if fs.isdir(fspath):
            raise IsADirectoryError(f"`{path}` is a folder; delete-file deletes files only")
        try:
            fs.rm(fspath)
        except FileNotFoundError:
            if not config.missing_ok:  # deleted by someone else between the check and now
                raise
            return {"status": "missing"}
        return {"status": "deleted"}

    results = ctx.map_rows(delete_one, rows) if rows.height else pl.DataFrame()
    return _files.result_table(rows, results, OUTPUT_SCHEMA)
