"""Read-only SQL over the DuckDB catalog of step outputs (`exo query`).

The catalog file is never opened for writing: a private in-memory database ATTACHes it READ_ONLY
and makes it the default, so views resolve as `<cluster>.<identifier>` (or by the bare identifier
when only one cluster has it). Before the user's SQL runs, external access is switched off except
for the catalog file and the Parquet files its views read, and the configuration is locked (as
the `sql` satellite's sandbox, `exo_dagster.sdk.duck.sandboxed`), so a query can neither write a
file (`copy ... to`, `attach`, `install`, `export`) nor read one outside the outputs. Only
reading statements are run at all (select, with, from, show, describe, summarize, explain); any
other kind is refused before it reaches DuckDB.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import duckdb

from exo_dagster.sdk import duck
from exo_dagster.storage.duckdb_catalog import catalog_path

ALIAS = "exo_catalog"
PARTITION_GLOB = "/*.parquet"  # duckdb_catalog.partitions_source: every partition file of one output
READING = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


class QueryError(Exception):
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
    con = _read_only(path)
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(f"bad SQL: {_message(exc)}") from None
        if not statements:
            raise QueryError("the query is empty")
        if len(statements) > 1:
            raise QueryError(f"the query holds {len(statements)} statements; `exo query` runs one")
        kind = statements[0].type
        if kind not in READING:
            raise QueryError(f"`exo query` is read-only: {kind.name} statements are refused "
                             "(it runs select, with, from, show, describe, summarize and explain)")
        try:
            cursor = con.execute(statements[0].query)
            columns = [d[0] for d in cursor.description or ()]
            types = [str(d[1]) for d in cursor.description or ()]
            return QueryResult(columns, types, cursor.fetchall())
        except duckdb.PermissionException as exc:
            raise QueryError(f"`exo query` is read-only and reads only the step outputs: {_message(exc)}") from None
        except duckdb.CatalogException as exc:
            views = ", ".join(list_views(con)) or "none"
            raise QueryError(f"{_message(exc)}\nviews in {path}: {views}") from None
        except duckdb.Error as exc:
            raise QueryError(_message(exc)) from None
    finally:
        con.close()


def list_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("select schema_name, view_name from duckdb_views() where database_name = ? and not internal "
                       "order by 1, 2", [ALIAS]).fetchall()
    return [f"{schema}.{view}" for schema, view in rows]


def _read_only(path: str) -> duckdb.DuckDBPyConnection:
    """A private in-memory database with the catalog attached read-only, then sandboxed and locked."""
    con = duck.connect()  # in memory, never downloading extensions
    try:
        urls: set[str] = set()
        try:
            con.execute(f"attach {_quote(path)} as {ALIAS} (read_only)")
        except duckdb.Error as exc:
            raise QueryError(f"cannot open the catalog {path} read-only: {_message(exc)}"
                             + (" (a step may be writing it; try again)" if isinstance(exc, duckdb.IOException) else "")) from None
        con.execute(f"use {ALIAS}")
        sources = con.execute("select schema_name, sql from duckdb_views() where database_name = ? and not internal",
                              [ALIAS]).fetchall()
        schemas = sorted({schema for schema, _ in sources})
        files, folders = {path, path + ".wal"}, set()
        for _, text in sources:
            for literal in _LITERAL.findall(text or ""):
                value = literal.replace("''", "'")
                if value.startswith("file://"):
                    value = value[len("file://"):]
                if "://" in value:  # a remote output (s3://...): read through fsspec, that file or folder only
                    urls.add(value)
                    if value.endswith(PARTITION_GLOB):
                        folders.add(value[:-len(PARTITION_GLOB)] + "/")
                    else:
                        files.add(value)
                elif os.path.isabs(value) and value.endswith(PARTITION_GLOB):  # a partitioned output: its folder
                    folders.add(value[:-len(PARTITION_GLOB)])
                elif os.path.isabs(value):
                    files |= {value, os.path.realpath(value)}
        # bare view names resolve too (the first schema that has one wins; `schema.view` is always exact)
        search = ",".join(f"{ALIAS}.{s}" for s in ["main", *[s for s in schemas if s != "main"]])
        con.execute("set search_path = ?", [search])
        duck.register_filesystems(con, urls)
        duck.restrict(con, paths=files, directories=folders)  # as the `sql` satellite's sandbox: only these files, configuration locked
        return con
    except BaseException:
        con.close()
        raise


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _message(exc: BaseException) -> str:
    return str(exc).strip()
