"""A relative file path inside SQL means what `read-table`'s `path:` means: relative to the cluster's folder.

DuckDB resolves `read_csv('data/x.csv')` against the process's working folder (wherever `dagster dev` was
started), and its sandbox checks the path before `file_search_path` is consulted. So the query is rewritten
before it runs: DuckDB's own parser (`json_serialize_sql`) finds the file arguments of the file-reading table
functions and the quoted file names in FROM (`from 'data/x.csv'`), and each relative one becomes the absolute
path under the cluster's folder. Strings anywhere else (a WHERE value that happens to look like a path) are
never touched. Statements DuckDB cannot serialize (COPY, CREATE, ...) are left as written; the sandbox refuses
a relative path there, and the error names the absolute path it tried.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from typing import Any

# DuckDB table functions whose first positional argument is a file, a glob or a list of them.
FILE_FUNCTIONS = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "sniff_csv",
        "read_parquet",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "parquet_file_metadata",
        "parquet_kv_metadata",
        "read_json",
        "read_json_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_json_objects",
        "read_json_objects_auto",
        "read_ndjson_objects",
        "read_text",
        "read_blob",
        "glob",
        "read_xlsx",
    }
)
_FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".ndjson", ".txt", ".gz", ".zst", ".xlsx")


def is_relative(path: str) -> bool:
    return bool(path) and "://" not in path and not os.path.isabs(path) and not path.startswith("~")


def anchor(query: str, base_dir: str | None) -> str:
    """`query` with every relative file path of a file-reading position made absolute under `base_dir`."""
    if not base_dir or "'" not in query and '"' not in query:
        return query
    return _anchor(query, base_dir)


@functools.lru_cache(maxsize=256)
def _anchor(query: str, base_dir: str) -> str:
    """One parse per (query, folder) in a process: fan-out chunks and repeated runs of a step reuse it."""
    spots = sorted(set(_file_literals(query)), reverse=True)
    if not spots:
        return query
    raw = query.encode("utf-8")  # DuckDB's query_location is a byte offset
    for start in spots:
        token = _quoted_at(raw, start)
        if token is None:
            continue
        quote, value, end = token
        if not is_relative(value):
            continue
        absolute = os.path.normpath(os.path.join(base_dir, value))
        raw = raw[:start] + (quote + absolute.replace(quote, quote * 2) + quote).encode("utf-8") + raw[end:]
    return raw.decode("utf-8")


def _file_literals(query: str) -> Iterator[int]:
    import duckdb

    from exo_dagster.sdk import duck

    con = duck.cursor()  # the process's shared in-memory database: about 0.1 ms, not a new database
    try:
        tree = json.loads(con.execute("select json_serialize_sql(?)", [query]).fetchall()[0][0])
    except duckdb.Error:
        return
    finally:
        con.close()
    if tree.get("error"):
        return
    yield from _walk(tree)


def _walk(node: Any) -> Iterator[int]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "TABLE_FUNCTION":
        function = node.get("function") or {}
        arguments = function.get("arguments") or []
        if function.get("function_name", "").lower() in FILE_FUNCTIONS and arguments:
            first = arguments[0]
            if isinstance(first, dict) and not first.get("name"):
                yield from _constants(first.get("expression", first))
    elif node.get("type") == "BASE_TABLE" and not node.get("schema_name") and not node.get("catalog_name"):
        name = node.get("table_name", "")
        if "/" in name or name.lower().endswith(_FILE_SUFFIXES):
            yield from _location(node)
    for value in node.values():
        yield from _walk(value)


def _constants(expression: dict) -> Iterator[int]:
    if expression.get("class") == "CONSTANT":
        yield from _location(expression)
    elif expression.get("class") == "FUNCTION" and expression.get("function_name") == "list_value":
        for argument in expression.get("arguments") or []:
            inner = argument.get("expression", argument) if isinstance(argument, dict) else None
            if isinstance(inner, dict) and inner.get("class") == "CONSTANT":
                yield from _location(inner)


def _location(node: dict) -> Iterator[int]:
    where = node.get("query_location")
    if isinstance(where, int) and 0 <= where < 2**62:
        yield where


def _quoted_at(raw: bytes, start: int) -> tuple[str, str, int] | None:
    """The `'...'` string or `"..."` identifier starting at byte `start`: (quote, its value, end offset)."""
    if start >= len(raw) or raw[start : start + 1] not in (b"'", b'"'):
        return None
    quote = raw[start : start + 1]
    i, out = start + 1, bytearray()
    while i < len(raw):
        if raw[i : i + 1] == quote:
            if raw[i + 1 : i + 2] == quote:
                out += quote
                i += 2
                continue
            return quote.decode(), out.decode("utf-8", errors="replace"), i + 1
        out += raw[i : i + 1]
        i += 1
    return None
