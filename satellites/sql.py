"""satellite/exospherehost/sql: DuckDB SQL over upstream outputs, scanned in place."""

from __future__ import annotations

import re

import duckdb

from exo_dagster import SatelliteConfig, StepContext, satellite

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
    con = duckdb.connect()
    if config.threads:
        con.execute(f"set threads = {int(config.threads)}")
    if config.memory_limit:
        con.execute("set memory_limit = ?", [config.memory_limit])
    for identifier, table in ctx.tables.items():
        con.execute(f'create view "{identifier}" as select * from {table.duckdb_source()}')
    if ctx.previous is not None:
        con.execute(f"create view input as select * from {ctx.previous.duckdb_source()}")
    return con.sql(config.query)
