"""The DuckDB catalog: every stored output as a view `<cluster>.<identifier>` in one file.

`duckdb .exo/catalog.duckdb "select * from orders_report.revenue"` reads the step's Parquet
in place. Only one process may write a DuckDB file at a time, so registration retries on the
lock for a while, and a catalog that stays busy (say, a user's open DuckDB shell) is logged,
never fatal: the data itself is already safely stored.
"""

from __future__ import annotations

import os
import random
import re
import time

import duckdb

from . import duck, paths

CATALOG_FILE = "catalog.duckdb"


def catalog_path() -> str:
    return os.environ.get("EXO_CATALOG") or os.path.join(paths.data_dir(), CATALOG_FILE)


def sql_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def register_view(schema: str, view: str, source_sql: str, *, path: str | None = None, wait_s: float = 30.0) -> bool:
    """Create or replace `schema.view` as `select * from <source_sql>`; False if the catalog stayed locked."""
    path = path or catalog_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    statement = f'create or replace view "{sql_name(schema)}"."{sql_name(view)}" as select * from {source_sql}'
    deadline = time.monotonic() + wait_s
    delay = 0.02
    while True:
        try:
            with duck.connect(path) as con:
                con.execute(f'create schema if not exists "{sql_name(schema)}"')
                con.execute(statement)
            return True
        except duckdb.IOException:
            if time.monotonic() > deadline:
                return False
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
