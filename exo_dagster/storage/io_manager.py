"""Parquet storage for step outputs: atomic writes, lazy reads, any fsspec URL, a DuckDB catalog.

Built on Dagster's own `UPathIOManager` (the base dagster-polars uses) rather than dagster-polars
itself, which breaks on Polars 2 (see docs/design/parquet-io-manager.md).

A step that passes Parquet source files through unchanged (e.g. `read-table` over Parquet)
returns a StoredTable pointing at them; we then store a small reference (`<key>.ref.json`, with
each file's size and mtime as its fingerprint) instead of copying the data.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import dagster as dg
import polars as pl
from dagster import ConfigurableIOManagerFactory, InputContext, OutputContext, UPathIOManager
from upath import UPath

from exo_dagster import keys
from exo_dagster.errors import UserError
from exo_dagster.sdk import paths
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.internal import leak_guard
from exo_dagster.sdk.masking import mask_value, masker
from exo_dagster.sdk.storage_options import version_stamp
from exo_dagster.sdk.table import RECENT, StoredTable
from exo_dagster.sdk.table_write import to_frame, write_parquet_atomic  # noqa: F401  (re-exported)
from exo_dagster.storage import chunk_folders
from exo_dagster.storage.chunk_folders import CHUNKS_DIR, LOCAL_CHUNKS_DIR  # noqa: F401  (re-exported)
from exo_dagster.storage.metadata import column_schema, table_metadata  # noqa: F401  (re-exported)

REF_SUFFIX = ".ref.json"


class SourceChanged(UserError, RuntimeError):
    """A referenced source file changed after the step that read it ran."""


def fingerprint(fs, paths_: list[str]) -> list[dict]:
    return [{"path": p, "version": version_stamp(fs.info(p))} for p in paths_]


def _write_classified(context: OutputContext, obj: Any, path: UPath) -> None:
    """Write a step's output; a lazy output (a DuckDB relation, a LazyFrame) computes here, so its errors
    are sorted as the step's own are (step_errors.py): a bad query fails at once, with its message first."""
    from exo_dagster.sdk import step_errors

    try:
        write_parquet_atomic(obj, path)
    except Exception as exc:
        kind = step_errors.kind(exc)
        if kind == step_errors.BUG:
            raise
        meta = context.definition_metadata or {}
        where = {k: getattr(meta[k], "value", meta[k]) for k in (keys.SOURCE, keys.SATELLITE) if k in meta}
        raise dg.Failure(
            description=step_errors.message(exc),
            allow_retries=kind != step_errors.PERMANENT,
            metadata={**where, keys.ERROR: type(exc).__name__, keys.ERROR_KIND: kind},
        ) from None


def _run_secrets(context: InputContext | OutputContext) -> list[str]:
    """The secrets this run's steps saw in this process (leak_guard.remember): masked in what writing or loading
    shows."""
    try:
        run_id = context.step_context.run_id
    except Exception:
        run_id = getattr(context, "_run_id", None)
    return leak_guard.run_values(run_id)


def _masked(context: OutputContext, metadata: dict[str, Any]) -> dict[str, Any]:
    """Output metadata (paths, column names) with the run's secrets masked."""
    hidden = _run_secrets(context)
    return mask_value(metadata, hidden) if hidden else metadata


def footer_counts(path: str) -> tuple[int, Any]:
    """Row count and Polars schema of a local Parquet file from its footer alone (no scan through Polars' engine)."""
    import pyarrow.parquet as pq  # already loaded where DuckDB relations are written

    return pq.read_metadata(path).num_rows, pl.read_parquet_schema(path)


def partition_file_stem(partition: str) -> str:
    """A file name for any partition key: %-encoded, dots too (`2026-11-01-05:00` -> `2026-11-01-05%3A00`)."""
    return quote(partition, safe="-_").replace(".", "%2E")


def storage_relative_path(key_path: list[str]) -> UPath:
    """`<prefix joined by __>/<last>`: an exo step's key [project, cluster, identifier] is stored at
    `<project>__<cluster>/<identifier>`, where outputs were kept when the key was
    [`<project>__<cluster>`, identifier]."""
    return UPath(*(["__".join(key_path[:-1])] if len(key_path) > 1 else []), key_path[-1])


class ParquetTableIOManager(UPathIOManager):
    """Stores each asset as `<base>/<key prefix joined by __>/<last key part>.parquet`; hands back a
    StoredTable (or LazyFrame)."""

    extension = ".parquet"

    def get_asset_relative_path(self, context: InputContext | OutputContext) -> UPath:
        return storage_relative_path(list(context.asset_key.path))

    def get_path_for_partition(self, context: InputContext | OutputContext, path: UPath, partition: str) -> UPath:
        """A partition is a file in the asset's folder: `<identifier>/<partition key, %-encoded>.parquet`."""
        return path / partition_file_stem(partition)

    @property
    def storage_options(self) -> dict[str, Any]:
        # Dagster 1.13 reads UPath._kwargs, which universal-pathlib 0.3 renamed to storage_options.
        return dict(getattr(self._base_path, "storage_options", {}) or {})

    def _get_path(self, context: InputContext | OutputContext) -> UPath:
        """Dagster's path for an unpartitioned output, built once per run and output (each is written, then read)."""
        key = ("asset", *context.asset_key.path) if context.has_asset_key else ("op", *context.get_identifier())
        paths_ = vars(self).setdefault("_exo_paths", {})
        if key not in paths_:
            paths_[key] = super()._get_path(context)
        return paths_[key]

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        """Writing an output (where a lazy one computes, and can fail) is masked as its step's compute was."""
        with leak_guard.masked(_run_secrets(context)):
            self._handle_output(context, obj)

    def load_input(self, context: InputContext) -> Any:
        with leak_guard.masked(_run_secrets(context)):
            return self._load_input(context)

    def _handle_output(self, context: OutputContext, obj: Any) -> None:
        """UPathIOManager.handle_output for an unpartitioned output, less its "Writing file at" debug line:
        an event-log write per step that says what the materialization's `path` and `dagster/uri` say."""
        if context.has_asset_partitions:
            return super().handle_output(context, obj)
        path = self._get_path(context)
        self.make_directory(path.parent)
        self.dump_to_path(context=context, obj=obj, path=path)
        if obj is not None:
            context.add_output_metadata(_masked(context, {"path": dg.MetadataValue.path(str(path))}))

    def _load_input(self, context: InputContext) -> Any:
        """UPathIOManager.load_input for an unpartitioned input, less its "Loading file from" debug line
        (the LOADED_INPUT event names the upstream output)."""
        if context.has_asset_key and context.has_asset_partitions:
            return super().load_input(context)
        return self.load_from_path(context=context, path=self._get_path(context))

    def make_directory(self, path: UPath) -> None:
        if paths.is_url(str(path)):
            return super().make_directory(path)
        os.makedirs(str(path), exist_ok=True)

    def _ref_path(self, path: UPath) -> UPath:
        return path.with_name(path.name + REF_SUFFIX)

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        options = self.storage_options or None
        ref = self._ref_path(path)
        # a partition is always a Parquet file of its own, so the catalog view's glob covers every partition
        # a reference stores its sources' paths as they are: one holding a secret (a signed URL) is copied instead
        secret_path = isinstance(obj, StoredTable) and masker(_run_secrets(context)).contains("\n".join(obj.paths))
        counted: tuple[int, Any] | None = None  # (rows, schema) of a referenced table, read before publishing it
        if (
            isinstance(obj, StoredTable)
            and obj.name is None
            and self._is_source(obj, path)
            and not context.has_asset_partitions
            and not secret_path
        ):
            table = StoredTable(obj.path, obj.storage_options)
            record = {"paths": table.paths, "fingerprint": fingerprint(self.fs, table.paths)}
            try:  # read the sources' footers before publishing a reference to them: never a ref to a broken file
                scan = table.lazy()
                counted = int(scan.select(pl.len()).collect().item()), scan.collect_schema()
            except Exception as exc:
                raise ValueError(f"cannot reference {', '.join(table.paths)}: {exc}") from None
            # a fan-out merge replaces its previous run's chunks (a source file's reference has nothing to drop)
            chunked = context.has_asset_key and any(self._own_chunk(p, context) for p in table.paths)
            previous = self._referenced(ref) if chunked else []
            with atomic_write(ref, "w") as fh:
                fh.write(json.dumps(record))
            if path.exists():
                path.unlink()
            stored, kind = table, "reference"
            self._drop_superseded_chunks(context, previous, table.paths)
        else:
            _write_classified(context, obj, path)
            if ref.exists():
                ref.unlink()
            stored, kind = StoredTable(str(path), options), "parquet"
        if counted is not None:  # a reference
            rows, schema = counted
        elif isinstance(obj, pl.DataFrame):  # in hand: no need to re-read the file just written
            rows, schema = obj.height, obj.schema
            if kind == "parquet" and not stored.is_remote:
                RECENT.put(str(path), obj)
        elif kind == "parquet" and not stored.is_remote:  # just written here: its footer has both
            rows, schema = footer_counts(str(path))
        else:
            scan = stored.lazy()
            rows, schema = int(scan.select(pl.len()).collect().item()), scan.collect_schema()
        context.add_output_metadata(
            _masked(
                context,
                {**table_metadata(context.output_metadata, rows, schema, list(stored.paths)), keys.STORAGE: kind},
            )
        )
        self._register(context, stored, path, schema)

    def _referenced(self, ref: UPath) -> list[str]:
        """The files the current reference names (none if there is none, or it cannot be read)."""
        try:
            return list(json.loads(ref.read_text()).get("paths") or [])
        except (OSError, ValueError, AttributeError, TypeError):  # any step could have written it: no shape assumed
            return []

    def _own_chunk(self, file: Any, context: OutputContext) -> tuple[str, str] | None:
        """(run folder, run id) when `file` is a chunk file of this asset's own fan-out, else None."""
        return chunk_folders.owned_folder(file, self._base_path, list(context.asset_key.path))

    def _drop_superseded_chunks(self, context: OutputContext, old: list, new: list[str]) -> None:
        """A fan-out output references its run's chunk files; once a newer run's merge replaces that
        reference, the older run's chunk folder is garbage (in S3 it would be paid for forever). The old
        reference is only a file (any step could have written it): chunk_folders deletes only this asset's
        own, marked chunk folders of runs that are over in this Dagster instance, and refuses the rest."""
        if not old or not context.has_asset_key:
            return
        try:
            instance = context.step_context.instance
        except Exception:
            return
        chunk_folders.drop_superseded(
            self.fs,
            self._base_path,
            list(context.asset_key.path),
            old,
            new,
            run_over=lambda run_id: chunk_folders.run_is_over(instance, run_id),
            warn=context.log.warning,
        )

    def _is_source(self, table: StoredTable, path: UPath) -> bool:
        """A pass-through of files outside our own storage (never a reference to another output)."""
        base = str(self._base_path)
        chunks = str(self._base_path / CHUNKS_DIR) + "/"
        return all(not p.startswith(base) or p.startswith(chunks) for p in table.paths)

    def _register(self, context: OutputContext, table: StoredTable, path: UPath, schema: Any) -> None:
        # DuckDB loads with the first view written, not the location
        from exo_dagster.storage import output_views as catalog

        view = (context.definition_metadata or {}).get(keys.VIEW)
        view = getattr(view, "value", view)
        columns = schema
        schema, name = (
            str(view).split(".", 1)
            if view
            else ("_".join(context.asset_key.path[:-1]) or "main", context.asset_key.path[-1])
        )
        source = (
            catalog.partitions_source(str(path.parent), "partition" not in columns)
            if context.has_asset_partitions
            else table.duckdb_source()
        )
        # remote outputs (s3://...) are read through fsspec (sdk/duck.py), never DuckDB's httpfs download
        urls = [str(path.parent)] if context.has_asset_partitions else list(table.paths)
        if not catalog.register_view(schema, name, source, urls=urls):
            context.log.warning(
                f"DuckDB catalog {catalog.catalog_path()} stayed locked; view {schema}.{name} not refreshed"
            )

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        ref = self._ref_path(path)
        if not path.exists() and ref.exists():
            record = json.loads(ref.read_text())
            if fingerprint(self.fs, record["paths"]) != record["fingerprint"]:
                upstream = context.upstream_output
                step = upstream.asset_key.to_user_string() if upstream is not None else "the upstream step"
                raise SourceChanged(
                    f"source files of {step} changed after it ran ({', '.join(record['paths'])}); re-run that step"
                )
            table = StoredTable(
                tuple(record["paths"]) if len(record["paths"]) > 1 else record["paths"][0], self.storage_options or None
            )
        else:
            table = StoredTable(str(path), self.storage_options or None)
        wanted = getattr(context.dagster_type, "typing_type", None)
        if wanted is pl.LazyFrame:
            return table.lazy()
        if wanted is pl.DataFrame:
            return table.collect()
        return table

    def path_exists(self, path: UPath) -> bool:
        return path.exists() or self._ref_path(path).exists()

    def get_metadata(self, context: OutputContext, obj: Any) -> dict:
        return {}


class ExoParquetIOManager(ConfigurableIOManagerFactory):
    """The configurable face of ParquetTableIOManager.

    `base_path` defaults to `<exo data folder>/outputs`; it may be any fsspec URL (`s3://bucket/prefix`),
    with `storage_options` in fsspec's spelling (credentials normally come from the environment).
    """

    base_path: str | None = None
    storage_options: dict[str, Any] | None = None

    def create_io_manager(self, context) -> ParquetTableIOManager:
        base = self.base_path or os.environ.get("EXO_OUTPUTS") or os.path.join(paths.data_dir(), "outputs")
        if not paths.is_url(base):
            os.makedirs(base, exist_ok=True)
        return ParquetTableIOManager(base_path=UPath(base, **(self.storage_options or {})))
