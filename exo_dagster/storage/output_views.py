"""The DuckDB catalog: every stored output as a view `<cluster>.<identifier>` in one file.

`exo query "select * from orders_report.revenue"` (exo_dagster/storage/views_query.py, read-only)
reads the step's Parquet in place. A step's output lives at a fixed path, so its view rarely changes: a small index
beside the catalog remembers each view's SQL, and the DuckDB file (about 15 ms to open) is
only written when a view is new or its source moved. Writers take a file lock, so parallel
step processes never fight over DuckDB's single-writer lock; a catalog that stays busy (a
user's open DuckDB shell) is logged, never fatal: the data itself is already stored.
"""

from __future__ import annotations

import json
import os
import time

from filelock import FileLock

from exo_dagster.sdk import paths, retrying
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.sql_text import sql_name

CATALOG_FILE = "catalog.duckdb"
BUSY_RETRY = retrying.Retry(attempts=None, delay=0.02, max_delay=0.5, jitter=(0.5, 1.5))


def catalog_path() -> str:
    return os.environ.get("EXO_CATALOG") or os.path.join(paths.data_dir(), CATALOG_FILE)


_seen: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}  # catalog path -> (index file stamp, index)


def _read_index(path: str) -> dict[str, str]:
    try:
        with open(path + ".index.json") as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return {}


def _index_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path + ".index.json")
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _current_index(path: str) -> dict[str, str]:
    """The index as last read by this process while its file is unchanged (every write replaces the
    file, a new inode): a step then checks its view with one stat instead of parsing the whole index."""
    stamp = _index_stamp(path)
    if stamp is None:
        return {}
    known = _seen.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    index = _read_index(path)
    if _index_stamp(path) == stamp:  # not replaced while we read it
        _seen[path] = (stamp, index)
    return index


def register_view(
    schema: str,
    view: str,
    source_sql: str,
    *,
    path: str | None = None,
    wait_s: float = 30.0,
    urls: tuple[str, ...] | list[str] = (),
) -> bool:
    """Create or replace `schema.view` as `select * from <source_sql>`; False if the catalog stayed locked.
    `urls`: the remote files the view reads (`s3://...`), whose fsspec filesystems DuckDB needs to bind it."""
    path = path or catalog_path()
    name = f'"{sql_name(schema)}"."{sql_name(view)}"'
    if _current_index(path).get(name) == source_sql and os.path.exists(path):
        return True  # already there, unchanged: no need to open the DuckDB file
    import duckdb  # only to write a view: a run whose views are all in place never loads DuckDB

    from exo_dagster.sdk import duck

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    deadline = time.monotonic() + wait_s
    with FileLock(path + ".lock"):  # writers one at a time, waiting as long as it takes (DuckDB's lock fails at once)
        index = _read_index(path)
        if index.get(name) == source_sql and os.path.exists(path):
            return True

        def create() -> None:
            with duck.connect(path, urls=urls) as con:
                con.execute(f'create schema if not exists "{sql_name(schema)}"')
                con.execute(f"create or replace view {name} as select * from {source_sql}")

        try:  # an IOException: someone outside exo (a DuckDB shell) holds the file
            retrying.call(create, BUSY_RETRY, retry_on=duckdb.IOException, deadline=deadline)
        except duckdb.IOException:
            return False
        index[name] = source_sql
        with atomic_write(path + ".index.json", "w") as fh:
            json.dump(index, fh, sort_keys=True)
    return True


def partitions_source(folder: str, with_column: bool = True) -> str:
    """SQL text over every partition file of a partitioned output (`<folder>/<key, %-encoded>.parquet`), with a
    `partition` column holding each row's partition key (unless the output has such a column already). The
    glob is read at query time, so one view covers partitions added later."""
    glob = (folder.rstrip("/") + "/*.parquet").replace("'", "''")
    scan = f"read_parquet('{glob}', filename = 'exo_file', union_by_name = true)"
    key = r"url_decode(regexp_extract(exo_file, '([^/]*)\.parquet$', 1))"
    return f"(select * exclude (exo_file){f', {key} as partition' if with_column else ''} from {scan})"
