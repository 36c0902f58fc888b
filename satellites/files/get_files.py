"""satellite/exospherehost/get-files: list files from local or remote storage (fsspec)."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from typing import Literal

import fsspec
import polars as pl
from pydantic import Field

from exo_dagster.sdk import SatelliteConfig, StepContext, satellite, step_errors
from exo_dagster.sdk.hashing import sha256_file

PROTOCOLS = {"local": "file", "s3": "s3", "gcs": "gcs", "azure": "az", "sftp": "sftp"}


class GetFilesConfig(SatelliteConfig):
    provider: Literal["local", "s3", "gcs", "azure", "sftp"] = Field(
        "local", description="Where the files are: local disk, or S3, GCS, Azure or SFTP through fsspec."
    )
    folder_path: str | None = Field(
        None,
        description="The folder to list (local: relative to the cluster file's folder; remote: bucket/prefix). "
        "Give this or `file-path`.",
    )
    file_path: str | None = Field(None, description="One file to list instead of a folder (wins over `folder-path`).")
    recursive: bool = Field(False, description="Also list the files in subfolders.")
    allowed_extensions: list[str] = Field(
        [],
        description="Keep only files with these extensions (case-insensitive, with or without the dot); "
        "empty: any extension.",
    )
    blocked_extensions: list[str] = Field(
        [], description="Drop files with these extensions (case-insensitive, with or without the dot)."
    )
    exclude_files: list[str] = Field([], description="File names to leave out (exact names, not paths).")
    exclude_folders: list[str] = Field(
        [], description="Folder names to leave out, at any depth below the listed folder."
    )
    storage_options: dict = Field(
        {}, description="fsspec options for a remote provider (the step's secrets are added, names lower-cased)."
    )


def _ext(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _norm_exts(exts: list[str]) -> set[str]:
    return {e.lower().lstrip(".") for e in exts}


@satellite(
    "satellite/exospherehost/get-files",
    config=GetFilesConfig,
    outputs={
        "path": "full path or URL",
        "name": "file name",
        "size": "bytes",
        "modified": "last modified (UTC)",
        "hash": "sha256 of the content",
    },
    kinds=("polars", "file"),
)
def get_files(ctx: StepContext, config: GetFilesConfig) -> pl.DataFrame:
    """Lists files in a folder (or one file) with size, modified time and content hash,
    filtered by extension and exclusions."""
    protocol = PROTOCOLS[config.provider]
    options = {**config.storage_options, **{k.lower(): v for k, v in ctx.secrets.items()}} if protocol != "file" else {}
    fs = fsspec.filesystem(protocol, **options)
    root = config.file_path or config.folder_path
    if not root:
        raise ValueError("get-files needs `folder-path` or `file-path` in its config")
    root = ctx.path(root) if protocol == "file" else root
    if config.file_path:
        try:
            entries = [fs.info(root)]
        except FileNotFoundError:
            raise step_errors.MissingFile(root, "get-files", config_key="file-path") from None
    else:
        if not fs.exists(root):
            raise step_errors.MissingFile(root, "get-files", what="folder", config_key="folder-path")
        found = fs.find(root, maxdepth=None if config.recursive else 1, detail=True)
        entries = [info for info in found.values() if info.get("type") == "file"]
    allowed, blocked = _norm_exts(config.allowed_extensions), _norm_exts(config.blocked_extensions)
    rows = []
    for info in sorted(entries, key=lambda i: i["name"]):
        path = info["name"]
        name = posixpath.basename(path)
        rel_dirs = posixpath.dirname(path)[len(str(root)) :].strip("/").split("/")
        if allowed and _ext(name) not in allowed or _ext(name) in blocked:
            continue
        if name in config.exclude_files or any(d in config.exclude_folders for d in rel_dirs if d):
            continue
        modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        if isinstance(modified, (int, float)):
            modified = datetime.fromtimestamp(modified, tz=UTC)
        url = path if protocol == "file" else f"{protocol}://{path}"
        rows.append(
            {
                "path": url,
                "name": name,
                "size": int(info.get("size") or 0),
                "modified": modified,
                "hash": sha256_file(path, fs),
            }
        )
    schema = {"path": pl.Utf8, "name": pl.Utf8, "size": pl.Int64, "modified": pl.Datetime("us", "UTC"), "hash": pl.Utf8}
    return pl.DataFrame(rows, schema=schema)
