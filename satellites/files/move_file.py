"""satellite/exospherehost/move-file: move files into a folder on any fsspec storage, idempotently.

Moving is a side effect, so a re-run must be safe: a file already at its destination (and gone from
its source) is reported `already-moved`, a move interrupted between copy and delete is finished,
and rows done by an earlier run are served from the row cache without touching storage.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field, ValidationInfo, field_validator

from exo_dagster.sdk import SatelliteConfig, StepContext, allowed_paths, satellite, step_errors
from exo_dagster.sdk import file_ops as _files
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.hashing import sha256_file
from exo_dagster.sdk.paths import is_url

OUTPUT_SCHEMA = {"path": pl.Utf8, "destination": pl.Utf8, "status": pl.Utf8, "_error": pl.Utf8}


class MoveFileConfig(SatelliteConfig):
    destination: str = Field(
        description="The folder to move the files into, keeping their names: a local folder (relative to the data "
        "folder) or any fsspec URL."
    )
    overwrite: Literal["error", "replace", "skip"] = Field(
        "error",
        description="When a different file is already at the destination: fail that row (error), "
        "replace it, or leave both and report `skipped`.",
    )
    create_folders: bool = Field(True, description="Create the destination folder (and its parents) when missing.")
    column: str = Field(
        "path", description="The column holding the file paths or URLs (of the per-row input or the previous step)."
    )
    storage_options: dict = Field(
        {}, description="fsspec options for remote storage (the step's secrets are added, names lower-cased)."
    )

    @field_validator("destination")
    @classmethod
    def _inside_allowed_folders(cls, value: str, info: ValidationInfo) -> str:
        allowed_paths.config_problem(value, info, with_cluster_folder=True)
        return value


@satellite(
    "satellite/exospherehost/move-file",
    config=MoveFileConfig,
    inputs={
        "paths": "file paths or URLs (${{ satellites.files.output.path }}, or per row $${{ ... }}); "
        "default: the previous step's `path` column"
    },
    outputs={
        "path": "the source, as given",
        "destination": "where the file is now",
        "status": "moved, already-moved or skipped (destination exists, `overwrite: skip`)",
        "_error": "why this file could not be moved (null when it was)",
    },
    kinds=("polars", "file"),
)
def move_file(ctx: StepContext, config: MoveFileConfig) -> pl.DataFrame:
    """Moves each file into the `destination` folder (a local folder, relative to the data folder, or any fsspec URL),
    keeping its name. `overwrite`: error (default), replace or skip when a different file is already there.
    Re-running is safe: a file already moved is `already-moved`, not an error."""
    options = _files.storage_options(ctx, config.storage_options)
    rows = _files.with_stat_fingerprint(_files.path_rows(ctx, config.column, "move-file"), ctx, options)
    folder = config.destination if is_url(config.destination) else ctx.output_path(config.destination)
    allowed = allowed_paths.roots(ctx.data_dir, ctx.base_dir)
    try:
        allowed_paths.check(folder, allowed, "move-file `destination`")
    except allowed_paths.PathOutside as exc:
        step_errors.at_key(exc, "destination")
        raise
    _files.check_inside(ctx, rows, allowed, "move-file")

    def move_one(row: dict, key: str) -> dict:
        path = row["path"]
        if not path:
            raise ValueError("empty path")
        source = _files.resolve(ctx, path)
        destination = folder.rstrip("/") + "/" + _files.basename(source)
        sfs, spath = _files.filesystem(source, options)
        dfs, dpath = _files.filesystem(destination, options)
        there = dfs.exists(dpath)
        if not sfs.exists(spath):
            if there:
                return {"destination": destination, "status": "already-moved"}
            raise FileNotFoundError(f"`{path}` does not exist, and `{destination}` does not either")
        if there:
            if _same_file(sfs, spath, dfs, dpath):  # an earlier run copied it and stopped before deleting
                sfs.rm(spath)
                return {"destination": destination, "status": "moved"}
            if config.overwrite == "skip":
                return {"destination": destination, "status": "skipped"}
            if config.overwrite == "error":
                raise FileExistsError(
                    f"`{destination}` already exists and differs from `{path}`; "
                    f"set `overwrite: replace` or `overwrite: skip`"
                )
        if config.create_folders:
            dfs.makedirs(dpath.rsplit("/", 1)[0] if "/" in dpath else dpath, exist_ok=True)
        if type(sfs) is type(dfs) and sfs.storage_options == dfs.storage_options:
            sfs.mv(spath, dpath)
        else:
            _copy_across(sfs, spath, dfs, dpath)
            sfs.rm(spath)
        return {"destination": destination, "status": "moved"}

    results = ctx.map_rows(move_one, rows) if rows.height else pl.DataFrame()
    return _files.result_table(rows, results, OUTPUT_SCHEMA)


def _same_file(sfs, spath: str, dfs, dpath: str) -> bool:
    return sfs.size(spath) == dfs.size(dpath) and sha256_file(spath, sfs) == sha256_file(dpath, dfs)


def _copy_across(sfs, spath: str, dfs, dpath: str) -> None:
    """Between filesystems: stream to a temporary name beside the target, then rename it into place."""
    with sfs.open(spath, "rb") as src, atomic_write(dpath, "wb", dfs, sweep=False) as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
