"""satellite/exospherehost/sql: DuckDB SQL over upstream outputs, scanned in place."""

from __future__ import annotations

import functools
import os
import re
import threading
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from exo_dagster.sdk import (
    SatelliteConfig,
    StepContext,
    StoredTable,
    allowed_paths,
    satellite,
    sql_paths,
    sql_text,
    templates,
)
from exo_dagster.sdk.table import RECENT

if TYPE_CHECKING:
    import duckdb
    import polars as pl

_TEMPLATE = re.compile(r"\$?\$\{\{.*?\}\}")
_FROM = re.compile(r"\b(?:from|join)\s+\"?([A-Za-z_][A-Za-z0-9_-]*)\"?", re.IGNORECASE)


class SqlConfig(SatelliteConfig):
    query: str = Field(
        description="The DuckDB SQL statement; upstream outputs are views named by their identifiers (`input`: "
        "the previous step), templated values become SQL literals."
    )
    threads: int | None = Field(
        None,
        description="DuckDB's `threads` setting for this query; default: 1 when the step's inputs are local "
        "files of under 8 MB in all (starting DuckDB's worker threads costs more than they save "
        "there), else DuckDB's own.",
    )
    memory_limit: str | None = Field(
        None, description="DuckDB's `memory_limit` setting (e.g. `4GB`); default: DuckDB's own."
    )
    multiple_statements: bool = Field(
        False,
        description="Run every statement of the query and return the last one's result; "
        "false: more than one statement is an error.",
    )

    @model_validator(mode="after")
    def _one_statement(self) -> SqlConfig:
        """A literal query with several statements is a located error at validate time (templated ones: at run time)."""
        if self.multiple_statements or templates.has_template(self.query):
            return self
        count = statement_count(self.query)
        if count is not None and count > 1:
            raise ValueError(
                f"the query holds {count} statements; a sql step runs one "
                f"(set `multiple-statements: true` to run them all and keep the last one's result)"
            )
        return self


SMALL_INPUT_BYTES = 8 << 20  # inputs under this in all: one DuckDB thread, and a small result comes back as a DataFrame
SMALL_RESULT_ROWS = 1 << 20  # ... of at most this many rows
SMALL_RESULT_BYTES = 64 << 20  # ... and bytes
# DuckDB types whose Arrow and Polars forms are exactly what DuckDB's own Parquet writer stores (others: DuckDB writes)
_FRAME_TYPES = frozenset(
    {
        "BOOLEAN",
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "FLOAT",
        "DOUBLE",
        "VARCHAR",
        "DATE",
        "TIMESTAMP",
        "BLOB",
    }
)

_parser_lock = threading.Lock()
_parser = None  # a DuckDB connection, made on first use (DuckDB loads with the first sql step, not the location)
_PARSED_KEPT = 256


@functools.lru_cache(maxsize=_PARSED_KEPT)
def parse(query: str) -> tuple[tuple[str, str], ...] | None:
    """The statements of `query` as (type, text) pairs, None when it does not parse. Cached by text: every
    run of a step parses the same query (config validation, then the step), and parsing needs no database."""
    import duckdb

    from exo_dagster.sdk import duck

    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = duck.connect()
        try:
            return tuple((s.type.name, s.query) for s in _parser.extract_statements(query))
        except duckdb.Error:
            return None


def statement_count(query: str) -> int | None:
    """How many statements DuckDB's parser finds in `query` (None when it does not parse: reported at run time)."""
    statements = parse(query)
    return None if statements is None else len(statements)


def tables_in_query(config: dict) -> set[str]:
    """Names the query reads, so `from orders` makes the step depend on the `orders` satellite."""
    query = config.get("query")
    if not isinstance(query, str):
        return set()
    import duckdb

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
    embeds={"query": sql_text.SQL},
)
def sql(ctx: StepContext, config: SqlConfig) -> duckdb.DuckDBPyRelation | pl.DataFrame:
    """Runs one DuckDB SQL statement; every upstream output is a view named by its identifier, read straight
    from Parquet (or from memory, where this process just wrote it). Templated values are literals, never
    SQL; files outside the step's inputs, the data folder and the cluster folder cannot be read or written."""
    import duckdb

    from exo_dagster.sdk import duck

    urls = [p for t in ctx.tables.values() for p in t.paths]
    if ctx.previous is not None:
        urls += ctx.previous.paths
    statements = parse(config.query)
    if statements is None:
        with duck.connect() as parser:  # for DuckDB's own message
            try:
                parser.extract_statements(config.query)
            except duckdb.Error as exc:
                raise ValueError(f"sql: the query does not parse: {exc}") from None
        statements = ()
    if not statements:
        raise ValueError("sql: the query is empty")
    if len(statements) > 1 and not config.multiple_statements:
        raise ValueError(
            f"sql: the query holds {len(statements)} statements; a sql step runs one "
            f"(set `multiple-statements: true` to run them all and keep the last one's result)"
        )
    # a relative file path means what read-table's `path:` means: under the cluster's folder,
    # whatever the working folder
    statements = tuple(
        (kind, sql_paths.anchor(text, ctx.base_dir) if kind == "SELECT" else text) for kind, text in statements
    )
    # read-only SQL shares a sandboxed database with the process's other steps (a cursor each);
    # anything else gets its own
    small = _small_inputs(urls)
    read_only = all(kind == "SELECT" for kind, _ in statements)
    con = _sandbox(ctx, config, urls, small, shared=read_only)
    text = config.query.lower()
    for identifier, table in ctx.tables.items():  # a view the query's text never names cannot be read: not made
        if identifier.lower() in text:
            _expose(con, identifier, table)
    if ctx.previous is not None and "input" in text:
        _expose(con, "input", ctx.previous)
    try:
        for _, statement in statements[:-1]:
            con.execute(statement)
        rel = _integers_stay_integers(con.sql(statements[-1][1]))
        frame = _small_result(rel) if small and read_only else None
        return frame if frame is not None else rel
    except duckdb.PermissionException as exc:
        raise PermissionError(
            f"sql: {exc} (a sql step reads and writes only its inputs, the data folder "
            f"`{ctx.data_dir}` and the cluster folder `{ctx.base_dir}`; the operator may add "
            f"folders with {allowed_paths.ENV}; a relative path read in a SELECT is looked up "
            f"under the cluster folder, one written or attached must be absolute)"
        ) from None


def _sandbox(
    ctx: StepContext, config: SqlConfig, urls: list[str], small: bool = False, shared: bool = False
) -> duckdb.DuckDBPyConnection:
    from exo_dagster.sdk import duck

    # the step's inputs, exactly (remote ones as URLs: DuckDB reads them through the registered fsspec filesystems)
    inputs = []
    for p in urls:
        local = p[len("file://") :] if p.startswith("file://") else p
        inputs += [os.path.abspath(local), os.path.realpath(local)] if allowed_paths.is_local(p) else [p]
    directories = [ctx.data_dir, ctx.base_dir, os.environ.get("EXO_OUTPUTS", ""), *allowed_paths.operator_roots()]
    threads = config.threads if config.threads is not None else (1 if small else None)
    settings = {"threads": threads, "memory_limit": config.memory_limit}
    make = duck.sandbox_cursor if shared else duck.sandboxed
    # DuckDB spills inside the data folder (a folder of this database's own), never to `<cwd>/.tmp`
    spill = ctx.data_dir if ctx.data_dir and allowed_paths.is_local(ctx.data_dir) else None
    return make(
        directories=[d for d in directories if d and allowed_paths.is_local(d)],
        paths=inputs,
        urls=urls,
        settings=settings,
        spill=spill,
    )


def _small_inputs(urls: list[str]) -> bool:
    """Local input files of under SMALL_INPUT_BYTES in all. False for remote inputs, globs, and a query with no
    inputs at all (`select * from range(...)`: its size is unknown)."""
    if not urls or not all(allowed_paths.is_local(u) for u in urls):
        return False
    total = 0
    for url in urls:
        try:
            total += os.stat(url[len("file://") :] if url.startswith("file://") else url).st_size
        except OSError:
            return False
        if total >= SMALL_INPUT_BYTES:
            return False
    return True


def _small_result(rel: duckdb.DuckDBPyRelation) -> pl.DataFrame | None:
    """The result as a DataFrame when it is small and of plain types: the IO manager then writes it without a
    second DuckDB query, reads its row count and schema from memory, and a next sql step in this process reads
    it from memory (`_expose`). About 1-2 ms less a step on a small table. None: larger, or of a type whose
    Parquet form DuckDB itself should write; the relation is then written by DuckDB, streamed, as before."""
    if any(str(t) not in _FRAME_TYPES for t in rel.types):
        return None
    import polars as pl

    reader = rel.to_arrow_reader(SMALL_RESULT_ROWS)
    batches, rows, size = [], 0, 0
    for batch in reader:
        rows, size = rows + batch.num_rows, size + batch.nbytes
        if rows > SMALL_RESULT_ROWS or size > SMALL_RESULT_BYTES:
            reader.close()
            return None  # a large result from small inputs (a join): DuckDB writes it, running the query again
        batches.append(batch)
    frame = pl.from_arrow(batches if batches else reader.schema.empty_table())
    assert isinstance(frame, pl.DataFrame), "record batches or a table make a DataFrame"
    return frame


def _integers_stay_integers(rel: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """sum() over BIGINT is HUGEINT in DuckDB, which Parquet and Arrow turn into DOUBLE: cast it back to
    BIGINT (a value out of range fails loudly instead of losing digits)."""
    wide = {"HUGEINT": "BIGINT", "UHUGEINT": "UBIGINT"}
    types = [str(t) for t in rel.types]
    if not any(t in wide for t in types):
        return rel
    columns = [
        f"CAST({sql_text.quote_identifier(c)} AS {wide[t]}) AS {sql_text.quote_identifier(c)}"
        if t in wide
        else sql_text.quote_identifier(c)
        for c, t in zip(rel.columns, types)
    ]
    return rel.project(", ".join(columns))


def _expose(con: duckdb.DuckDBPyConnection, name: str, table: StoredTable) -> None:
    recent = RECENT.get(table.path) if isinstance(table.path, str) and not table.is_remote else None
    if recent is not None:  # an output this process just wrote, still in memory and unchanged on disk: no Parquet scan
        con.register(name, recent)
        return
    # Remote URLs are read through the fsspec filesystems duck.connect registered (no httpfs download).
    con.execute(
        f"create or replace temp view {sql_text.quote_identifier(name)} as select * from {table.duckdb_source()}"
    )
