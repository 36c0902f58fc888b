"""`exo catalog sync`: views for every output under the outputs base path, on a host that ran none of them.

With no shared disk each host keeps its own DuckDB catalog, and a step registers its view only in the
catalog of the worker that ran it. This lists `<outputs>/<project>__<cluster>/` (S3 or local) and
registers `<cluster>.<identifier>` for each stored output: a Parquet file, a reference (`.ref.json`,
e.g. fan-out chunks) or a folder of partitions. Remote files are read through fsspec, offline.
"""

from __future__ import annotations

import json
import os

import fsspec

from exo_dagster.sdk import paths
from exo_dagster.sdk.table import StoredTable
from exo_dagster.storage import output_views as catalog

REF_SUFFIX = ".parquet.ref.json"


def outputs_base() -> str:
    return os.environ.get("EXO_OUTPUTS") or os.path.join(paths.data_dir(), "outputs")


def sync(base: str | None = None, *, catalog_file: str | None = None) -> list[str]:
    """Register a view per stored output under `base`; returns the views, `schema.view`."""
    base = (base or outputs_base()).rstrip("/")
    fs, root = fsspec.core.url_to_fs(base)
    url = fs.unstrip_protocol if paths.is_url(base) else (lambda p: p)
    done = []
    for folder in fs.ls(root, detail=True):
        name = folder["name"].rstrip("/").rsplit("/", 1)[-1]
        if folder["type"] != "directory" or name.startswith("_"):  # _chunks, _intermediates: not outputs
            continue
        schema = catalog.sql_name(name.split("__", 1)[1] if "__" in name else name)
        for entry in fs.ls(folder["name"], detail=True):
            path, leaf = entry["name"].rstrip("/"), entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry["type"] == "directory":
                view, files, source = leaf, [url(path)], catalog.partitions_source(url(path))
            elif leaf.endswith(REF_SUFFIX):
                view = leaf[: -len(REF_SUFFIX)]
                with fs.open(path, "r") as fh:
                    files = list(json.load(fh)["paths"])
                source = StoredTable(files[0] if len(files) == 1 else tuple(files)).duckdb_source()
            elif leaf.endswith(".parquet") and not fs.exists(path + ".ref.json"):
                view, files = leaf[: -len(".parquet")], [url(path)]
                source = StoredTable(files[0]).duckdb_source()
            else:
                continue
            if catalog.register_view(schema, view, source, path=catalog_file, urls=files):
                done.append(f"{schema}.{catalog.sql_name(view)}")
    return sorted(done)
