"""satellite/exospherehost/sql: DuckDB SQL over upstream outputs, scanned in place."""

from __future__ import annotations

import re

import duckdb

from exo_dagster import SatelliteConfig, StepContext, StoredTable, duck, satellite

_TEMPLATE = re.compile(r"\$?\$\{\{.*?\}\}")
_FROM = re.compile(r"\b(?:from|join)\s+\"?([A-Za-z_][A-Za-z0-9_-]*)\"?", re.IGNORECASE)


class SqlConfig(SatelliteConfig):
    query: str
    threads: int | None = None
    memory_limit: str | None = None


def tables_in_query(config: dict) -> set[str]:
    """Names the query reads, so `from orders` makes the step depend on the `orders` satellite."""
    query = config.get("query")
    if not isinstance(query, str):
        return set()
    text = _TEMPLATE.sub("_exo_template", query)
    try:
        return set(duckdb.get_table_names(text, qualified=False))
    except duckdb.Error:
        return set(_FROM.findall(text))


@satellite(
    "satellite/exospherehost/sql",
    config=SqlConfig,
    outputs={"*": "the query's columns"},
    kinds=("duckdb", "sql"),
    table_references=tables_in_query,
)
def sql(ctx: StepContext, config: SqlConfig) -> duckdb.DuckDBPyRelation:
    """Runs DuckDB SQL; every upstream output is a view named by its identifier, read straight from Parquet."""
    urls = [p for t in ctx.tables.values() for p in t.paths]
    # threads / memory-limit are database-wide settings: such a step gets a database of its own.
    con = duck.connect(urls=urls) if config.threads or config.memory_limit else duck.cursor(urls=urls)
    if config.threads:
        con.execute(f"set threads = {int(config.threads)}")
    if config.memory_limit:
        con.execute("set memory_limit = ?", [config.memory_limit])
    for identifier, table in ctx.tables.items():
        _expose(con, identifier, table)
    if ctx.previous is not None:
        _expose(con, "input", ctx.previous)
    return con.sql(config.query)


def _expose(con: duckdb.DuckDBPyConnection, name: str, table: StoredTable) -> None:
    # Remote URLs are read through the fsspec filesystems duck.connect registered (no httpfs download).
    con.execute(f'create or replace temp view "{name}" as select * from {table.duckdb_source()}')
