import polars as pl

from satellites.tables.sql import SqlConfig, sql, tables_in_query


def rows(result) -> list[tuple]:
    """A sql step's result as tuples: a DuckDB relation, or the DataFrame a small result comes back as."""
    return result.fetchall() if hasattr(result, "fetchall") else [tuple(r) for r in result.iter_rows()]


def frame(result) -> pl.DataFrame:
    return result if isinstance(result, pl.DataFrame) else result.pl()


def test_query_over_upstream_views(make_ctx, stored):
    orders = stored("orders", pl.DataFrame({"region": ["n", "s", "n"], "amount": [1.0, 2.0, 3.0]}))
    regions = stored("regions", pl.DataFrame({"region": ["n", "s"], "label": ["North", "South"]}))
    ctx = make_ctx(tables={"orders": orders, "regions": regions}, previous=orders)
    rel = sql(
        ctx,
        SqlConfig(
            query="select label, sum(amount) total from orders join regions using (region) group by 1 order by 1"
        ),
    )
    assert frame(rel).to_dicts() == [{"label": "North", "total": 4.0}, {"label": "South", "total": 2.0}]
    assert rows(sql(ctx, SqlConfig(query="select count(*) n from input"))) == [(3,)]


def test_table_names_found_in_query():
    assert tables_in_query({"query": "select * from a join b on a.x = b.x"}) == {"a", "b"}
    assert "orders" in tables_in_query(
        {"query": "select * from orders join x using (id)"}
    )  # unbindable: regex fallback
    assert tables_in_query({"query": 42}) == set()


# -- trust boundaries (issue 10) ---------------------------------------------------------------
import dagster as dg  # noqa: E402
import pytest  # noqa: E402

from exo_dagster import compile_cluster, parse_cluster  # noqa: E402


def test_one_statement_unless_opted_in(make_ctx, stored, tmp_path):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    with pytest.raises(ValueError, match="holds 2 statements"):  # a literal query: already when the config is read
        SqlConfig(query="create table y as select 1; select * from t")
    with pytest.raises(ValueError, match="holds 2 statements"):  # a query built at run time: when it runs
        sql(
            ctx,
            SqlConfig.model_construct(
                query="create table y as select 1; select * from t",
                multiple_statements=False,
                threads=None,
                memory_limit=None,
            ),
        )
    rel = sql(
        ctx,
        SqlConfig(query="create temp table y as select 41 + x as x from t; select * from y", multiple_statements=True),
    )
    assert rows(rel) == [(42,)]


def test_sandbox_allows_inputs_data_and_cluster_folder_only(make_ctx, stored, tmp_path):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    (tmp_path / "data").mkdir()
    rows(sql(ctx, SqlConfig(query=f"copy (select * from t) to '{tmp_path / 'data' / 'ok.csv'}'")))
    assert (tmp_path / "data" / "ok.csv").read_text() == "x\n1\n"
    (tmp_path / "in.csv").write_text("a\n1\n")  # the cluster's own folder
    assert rows(sql(ctx, SqlConfig(query=f"select * from read_csv('{tmp_path / 'in.csv'}')"))) == [(1,)]
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n1\n")
    for query in (
        f"select * from read_csv('{outside / 'secret.csv'}')",
        "select * from read_csv('/etc/passwd')",
        f"select * from '{tmp_path}/../{outside.name}/secret.csv'",
    ):
        with pytest.raises(PermissionError, match="Cannot access file") as info:
            rows(sql(ctx, SqlConfig(query=query)))
        assert "secret.csv" in str(info.value) or "/etc/passwd" in str(info.value)
    with pytest.raises(PermissionError, match=str(outside)):
        rows(sql(ctx, SqlConfig(query=f"copy (select 1) to '{outside / 'owned.csv'}'")))
    assert not (outside / "owned.csv").exists()
    with pytest.raises(Exception, match="locked"):
        rows(sql(ctx, SqlConfig(query="set enable_external_access = true")))


def test_integer_sums_stay_integers(make_ctx, stored):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1, 2, 3]}, schema={"x": pl.Int64}))})
    out = frame(sql(ctx, SqlConfig(query="select sum(x) as total, count(*) as n from t")))
    assert out.schema["total"] == pl.Int64 and out["total"].to_list() == [6]


INJECTION = """\
version: 0.0.1b
cluster:
  identifier: test/inject
  satellites:
    - name: Names
      uses: satellite/exospherehost/sql
      identifier: names
      config:
        query: >-
          select * from (values ('ada'), ('x'' union all select ''INJECTED'' --'),
          ('y''; copy (select ''owned'') to ''OWNED''; select ''')) t(name)
    - name: Lookup
      uses: satellite/exospherehost/sql
      identifier: lookup
      config:
        query: >-
          select name from names where name in (${{ satellites.names.output.name }})
          or name = '${{ satellites.names.output.name }}'
"""


def test_values_from_data_never_become_sql_in_a_real_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    owned = tmp_path / "owned.csv"
    cluster = parse_cluster(INJECTION.replace("OWNED", str(owned)), str(tmp_path / "c.yaml"))
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success
    out = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__inject" / "lookup.parquet")
    assert sorted(out["name"].to_list()) == sorted(
        pl.read_parquet(tmp_path / "exo" / "outputs" / "test__inject" / "names.parquet")["name"].to_list()
    )
    assert "INJECTED" not in out["name"].to_list() and out.height == 3
    assert not owned.exists()


def test_two_literal_statements_are_a_located_error(tmp_path):
    from exo_dagster import SpecError

    text = (
        "version: 0.0.1b\ncluster:\n  identifier: test/two\n  satellites:\n"
        "    - name: Q\n      uses: satellite/exospherehost/sql\n"
        "      config: {query: \"select 1; copy (select 2) to 'x.csv'\"}\n"
    )
    with pytest.raises(SpecError) as info:
        parse_cluster(text, str(tmp_path / "c.yaml"))
    assert f"{tmp_path / 'c.yaml'}:7:" in str(info.value) and "holds 2 statements" in str(info.value)


BATCH = """\
version: 0.0.1b
cluster:
  identifier: test/batch
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      identifier: source
      config: {{path: "{source}"}}
    - name: Filter and aggregate
      uses: satellite/exospherehost/sql
      identifier: totals
      config:
        query: >-
          select region, count(*) as n, sum(amount) as total from source where flag
          group by region order by region
    - name: Write
      uses: satellite/exospherehost/write-table
      identifier: written
      config: {{path: "totals.parquet"}}
"""


def test_the_batch_chain_copies_nothing(tmp_path, monkeypatch, make_ctx):
    """read-table -> sql -> write-table over Parquet (what benchmarks/bench_batch.py times): the source is
    referenced, never copied into exo's store, and the query's rows go from DuckDB to Parquet, not through Python."""
    import duckdb

    import satellites.tables.sql as sql_module

    monkeypatch.setattr(
        sql_module, "SMALL_INPUT_BYTES", 0
    )  # what bench_batch runs: inputs far over the small-input size
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    source = tmp_path / "source.parquet"
    duckdb.sql(
        f"copy (select 'r' || (i % 3) as region, i / 10.0 as amount, i % 2 = 0 as flag from range(5000) t(i)) "
        f"to '{source}' (format parquet, row_group_size 1000)"
    )
    cluster = parse_cluster(BATCH.format(source=source), str(tmp_path / "c.yaml"))
    assert (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
        .success
    )
    outputs = tmp_path / "exo" / "outputs" / "test__batch"
    assert sorted(p.name for p in outputs.iterdir()) == ["source.parquet.ref.json", "totals.parquet", "written.parquet"]
    expected = duckdb.sql(
        f"select region, count(*) as n, sum(amount) as total from '{source}' where flag group by region order by region"
    ).pl()
    written = pl.read_parquet(tmp_path / "exo" / "totals.parquet")
    assert written.select("region", "n").equals(expected.select("region", "n"))  # float sums: summation order varies
    assert all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(written["total"], expected["total"]))
    # the step hands the IO manager a DuckDB relation (DuckDB's COPY writes it), not rows fetched into Python
    from exo_dagster import StoredTable

    rel = sql(
        make_ctx(tables={"source": StoredTable(str(source), name="source")}),
        SqlConfig(query="select count(*) from source"),
    )
    assert isinstance(rel, duckdb.DuckDBPyRelation)


def test_read_only_queries_share_a_sandbox_but_never_see_each_others_views(make_ctx, stored, tmp_path):
    import duckdb

    from exo_dagster.sdk import duck

    a = make_ctx(tables={"a": stored("a", pl.DataFrame({"x": [1]}))})
    b = make_ctx(tables={"b": stored("b", pl.DataFrame({"x": [2]}))})
    first = sql(a, SqlConfig(query="select x from a"))
    databases = len(duck._sandboxes)
    assert rows(sql(b, SqlConfig(query="select x from b"))) == [(2,)]
    assert len(duck._sandboxes) == databases  # the same sandbox: one shared database, a cursor each
    with pytest.raises(duckdb.CatalogException):  # `a` is a view of the first step's cursor only
        rows(sql(b, SqlConfig(query="select x from a")))
    assert rows(first) == [(1,)]
    # a query that writes gets a database of its own: what it creates is gone for the next step
    made = sql(a, SqlConfig(query="create table kept as select 7 as x; select * from kept", multiple_statements=True))
    assert rows(made) == [(7,)]
    with pytest.raises(duckdb.CatalogException):
        rows(sql(a, SqlConfig(query="select * from kept")))
    with pytest.raises(PermissionError, match="Cannot access file"):  # the shared sandbox is locked as its own is
        rows(sql(a, SqlConfig(query="select * from read_csv('/etc/passwd')")))


# -- small inputs: the result comes back as a DataFrame (issue 15: per-step cost of a sql chain) ---------------------
PLAIN = (
    "select 1::tinyint as i8, 2::smallint as i16, 3::integer as i32, 4::bigint as i64, 5::ubigint as u64, "
    "1.5::float as f32, 2.5::double as f64, 'x' || i as s, (i % 2 = 0) as b, date '2026-12-07' + i::integer as d, "
    "timestamp '2026-12-07 10:00:00' + to_seconds(i) as ts, 'ab'::blob as bin, "
    "case when i = 1 then null else i end as nullable from range(3) r(i)"
)


def test_small_results_are_frames_that_store_exactly_what_duckdb_stores(make_ctx, stored, tmp_path, monkeypatch):
    """The small-result DataFrame, written by exo's IO manager, reads back (in Polars and in DuckDB) exactly as the
    file DuckDB's own COPY writes for the same relation."""
    import duckdb
    from upath import UPath

    import satellites.tables.sql as sql_module
    from exo_dagster.sdk.table_write import write_parquet_atomic

    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    query = PLAIN.replace("range(3) r(i)", "range(3) r(i), t")
    small = sql(ctx, SqlConfig(query=query))
    assert isinstance(small, pl.DataFrame) and small.height == 3
    monkeypatch.setattr(sql_module, "SMALL_INPUT_BYTES", 0)
    big = sql(ctx, SqlConfig(query=query))
    assert isinstance(big, duckdb.DuckDBPyRelation)
    write_parquet_atomic(small, UPath(tmp_path / "small.parquet"))
    write_parquet_atomic(big, UPath(tmp_path / "big.parquet"))
    from_small, from_big = pl.read_parquet(tmp_path / "small.parquet"), pl.read_parquet(tmp_path / "big.parquet")
    assert from_small.schema == from_big.schema and from_small.equals(from_big)
    described = [
        duckdb.sql(f"describe select * from '{tmp_path / name}'").fetchall()
        for name in ("small.parquet", "big.parquet")
    ]
    assert described[0] == described[1]


@pytest.mark.parametrize(
    "expression",
    [
        "interval 1 day",
        "[1, 2]",
        "{'a': 1}",
        "uuid()",
        "1.25::decimal(10, 2)",
        "timestamptz '2026-12-07 10:00:00+00'",
        "map {'k': 1}",
        "time '10:00:00'",
    ],
)  # Polars' Time is nanoseconds: DuckDB would read TIME_NS
def test_other_types_stay_relations_written_by_duckdb(make_ctx, stored, expression):
    import duckdb

    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    assert isinstance(sql(ctx, SqlConfig(query=f"select {expression} as v, x from t")), duckdb.DuckDBPyRelation)


def test_a_large_result_of_small_inputs_is_written_by_duckdb_in_full(make_ctx, stored, monkeypatch):
    import duckdb

    import satellites.tables.sql as sql_module

    monkeypatch.setattr(sql_module, "SMALL_RESULT_ROWS", 5)
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": list(range(4))}))})
    result = sql(ctx, SqlConfig(query="select a.x, b.x as y from t a, t b order by 1, 2"))  # 16 rows from 4
    assert isinstance(result, duckdb.DuckDBPyRelation) and len(rows(result)) == 16
    assert isinstance(sql(ctx, SqlConfig(query="select * from t")), pl.DataFrame)  # 4 rows: under the cap


def test_no_inputs_or_large_inputs_keep_duckdbs_threads_and_streaming(make_ctx, stored, monkeypatch):
    import duckdb

    import satellites.tables.sql as sql_module

    assert isinstance(sql(make_ctx(), SqlConfig(query="select 42 as x")), duckdb.DuckDBPyRelation)  # size unknown
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    assert sql_module._small_inputs([p for t in ctx.tables.values() for p in t.paths])
    monkeypatch.setattr(sql_module, "SMALL_INPUT_BYTES", 1)
    assert not sql_module._small_inputs([p for t in ctx.tables.values() for p in t.paths])
    assert not sql_module._small_inputs(["s3://bucket/t.parquet"])


def test_a_next_step_reads_an_output_this_process_just_wrote_from_memory(make_ctx, tmp_path):
    """The in-memory copy is used only while the file is unchanged: a file rewritten since is read from disk."""
    from exo_dagster import StoredTable
    from exo_dagster.sdk.table import RECENT

    path = tmp_path / "prev.parquet"
    kept = pl.DataFrame({"x": [1, 2]})
    kept.write_parquet(path)
    RECENT.put(str(path), kept)
    ctx = make_ctx(previous=StoredTable(str(path), name="prev"))
    assert rows(sql(ctx, SqlConfig(query="select sum(x) from input"))) == [(3,)]
    pl.DataFrame({"x": [10, 20, 30]}).write_parquet(path)  # changed on disk: the kept frame no longer counts
    assert rows(sql(ctx, SqlConfig(query="select sum(x) from input"))) == [(60,)]
