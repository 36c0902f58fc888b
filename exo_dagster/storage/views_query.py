"""Read-only SQL over the DuckDB catalog of step outputs (`exo query`).

Read-only by construction, not by a statement filter. The catalog file is opened READ_ONLY just long
enough to read its views' SQL, then closed. The query runs in a private in-memory database holding
those views, rewritten to read each output through `read_only_files` (`exo-read://<path>`, and `s3://`
through a read-only wrapper): a filesystem that opens only the outputs' files, only for reading. No
local path is allowed at all (`enable_external_access=false` with only those URLs in
`allowed_paths`/`allowed_directories`), spilling is off (DuckDB may always write its temp folder), and
the configuration is locked. So no statement, whatever its kind (`explain analyze copy ... to`,
`export`, `attach`, `install`), can write a file or read one that is not an output. Only reading
statements are run at all (select, with, from, show, describe, summarize, explain); the others are
refused first, for a clearer message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import duckdb
import fsspec
from fsspec.implementations.local import LocalFileSystem

from exo_dagster.errors import UserError
from exo_dagster.sdk import duck, sql_text
from exo_dagster.storage import read_only_files
from exo_dagster.storage.output_views import catalog_path

PARTITION_GLOB = "/*.parquet"  # output_views.partitions_source: every partition file of one output
READING = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_REFUSED = re.compile(r"ReadOnly: (.*)")


class QueryError(UserError):
    """A query that cannot run; its str() is the whole message for the user (no traceback)."""


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def query(sql: str, path: str | None = None) -> QueryResult:
    """Run one reading statement against the catalog at `path` (default: the data folder's)."""
    path = os.path.abspath(path or catalog_path())
    if not os.path.isfile(path):
        raise QueryError(f"no catalog yet at {path}: run a cluster first (its step outputs become views there)")
    with duckdb.connect() as parser:  # no database needed to parse, and no catalog opened for a refusal
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"bad SQL: {_message(exc)}") from None
    if not statements:
        raise QueryError("the query is empty")
    if len(statements) > 1:
        raise QueryError(f"the query holds {len(statements)} statements; `exo query` runs one")
    kind = statements[0].type
    if kind not in READING:  # for a clear message only: the connection below cannot write whatever it runs
        raise QueryError(
            f"`exo query` is read-only: {kind.name} statements are refused "
            "(it runs select, with, from, show, describe, summarize and explain)"
        )
    broken: dict[str, str] = {}
    con = read_only_connection(path, sql, broken)
    try:
        try:
            cursor = con.execute(statements[0].query)
            columns = [d[0] for d in cursor.description or ()]
            types = [str(d[1]) for d in cursor.description or ()]
            return QueryResult(columns, types, cursor.fetchall())
        except duckdb.PermissionException as exc:
            raise QueryError(f"`exo query` is read-only and reads only the step outputs: {_message(exc)}") from None
        except duckdb.CatalogException as exc:
            views = ", ".join(f"{schema}.{view}" for schema, view, _ in _catalog_views(path)) or "none"
            unreadable = "".join(f"\n{name} cannot be read now: {why}" for name, why in sorted(broken.items()))
            raise QueryError(f"{_message(exc)}\nviews in {path}: {views}{unreadable}") from None
        except duckdb.Error as exc:
            refused = _REFUSED.search(str(exc))  # the read-only filesystem said no (DuckDB quotes its traceback)
            raise QueryError(refused.group(1).strip() if refused else _message(exc)) from None
    finally:
        con.close()


def read_only_connection(
    path: str,
    sql: str | None = None,
    broken: dict[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A private in-memory database with the catalog's views over read-only files; sandboxed and locked.
    Making a view reads its files' footers, so only the views `sql` names are made (all when it names none:
    `show all tables`). `broken` gets `schema.view: why` for each view that cannot be read now."""
    views = _catalog_views(path)
    named = [v for v in views if sql is not None and v[1].lower() in sql.lower()]
    views = named or views
    con = duckdb.connect(
        ":memory:",
        config={  # no spilling: DuckDB lets SQL write its temp folder, sandbox or not
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "allow_persistent_secrets": False,
            "temp_directory": "",
        },
    )
    try:
        statements, local_files, local_folders, remote = _over_read_only_files(views)
        con.register_filesystem(
            read_only_files.ReadOnlyFiles(read_only_files.PROTOCOL, LocalFileSystem(), local_files, local_folders)
        )
        for protocol, (files, folders) in sorted(remote.items()):
            try:
                inner = fsspec.filesystem(protocol)
            except (ValueError, ImportError):  # not a protocol fsspec knows: its views cannot be read (see `broken`)
                continue
            con.register_filesystem(read_only_files.ReadOnlyFiles(protocol, inner, files, folders))
        schemas = sorted({schema for schema, _, _ in views})
        for schema in schemas:
            con.execute(f"create schema if not exists {sql_text.quote_identifier(schema)}")
        for (schema, name, _), statement in zip(views, statements):
            try:
                con.execute(statement)
            except duckdb.Error as exc:  # a view whose files are gone, or one exo did not write: left out
                if broken is not None:
                    broken[f"{schema}.{name}"] = _message(exc).splitlines()[0]
        # bare view names resolve too (the first schema that has one wins; `schema.view` is always exact)
        con.execute("set search_path = ?", [",".join(["main", *[s for s in schemas if s != "main"]])])
        # only these URLs, each served read-only by its filesystem: not one local path
        duck.restrict(
            con,
            paths=[read_only_files.local_url(f) for f in local_files]
            + [f for files, _ in remote.values() for f in files],
            directories=[read_only_files.local_url(f) + "/" for f in local_folders]
            + [f + "/" for _, folders in remote.values() for f in folders],
        )
        return con
    except BaseException:
        con.close()
        raise


def _over_read_only_files(views: list[tuple[str, str, str]]):
    """The views' CREATE statements reading local files through `exo-read://`, and what each filesystem may
    read: (statements, local files, local partition folders, {remote protocol: (files, folders)})."""
    local_files, local_folders, remote, statements = set(), set(), {}, []
    for _, _, text in views:
        pieces, last = [], 0
        for start, end, value in _string_literals(text):
            target = value[len("file://") :] if value.startswith("file://") else value
            if target.startswith(read_only_files.PREFIX):  # not written by exo: left as it is, and not allowed
                continue
            if "://" in target:  # a remote output (s3://...): read through fsspec, that file or folder only
                files, folders = remote.setdefault(target.split("://", 1)[0], (set(), set()))
                if target.endswith(PARTITION_GLOB):
                    folders.add(target[: -len(PARTITION_GLOB)])
                else:
                    files.add(target)
                continue
            if not os.path.isabs(target):
                continue
            if target.endswith(PARTITION_GLOB):  # a partitioned output: the Parquet files of its folder
                local_folders.add(os.path.normpath(target[: -len(PARTITION_GLOB)]))
            else:
                local_files.add(os.path.normpath(target))
            pieces += [text[last:start], _quote(read_only_files.local_url(target))]
            last = end
        statements.append("".join(pieces) + text[last:])
    return statements, local_files, local_folders, remote


def _catalog_views(path: str) -> list[tuple[str, str, str]]:
    """(schema, view, CREATE VIEW text) of every view in the catalog, opened READ_ONLY and closed again."""
    try:
        with duckdb.connect(
            path, read_only=True, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        ) as catalog:
            return catalog.execute(
                "select schema_name, view_name, sql from duckdb_views() where not internal order by 1, 2"
            ).fetchall()
    except duckdb.Error as exc:
        busy = " (a step may be writing it; try again)" if isinstance(exc, duckdb.IOException) else ""
        raise QueryError(f"cannot open the catalog {path} read-only: {_message(exc)}{busy}") from None


def _string_literals(text: str) -> list[tuple[int, int, str]]:
    """(start, end, value) of each '...' string constant in SQL text, as DuckDB's own tokenizer finds them."""
    found = []
    for start, kind in duckdb.tokenize(text):
        if kind != duckdb.token_type.string_const or text[start : start + 1] != "'":
            continue
        i = start + 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                break
            i += 1
        found.append((start, i + 1, text[start + 1 : i].replace("''", "'")))
    return found


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _message(exc: BaseException) -> str:
    return str(exc).strip()
