import polars as pl

from satellites.tables.sql import SqlConfig, sql, tables_in_query


def test_query_over_upstream_views(make_ctx, stored):
    orders = stored("orders", pl.DataFrame({"region": ["n", "s", "n"], "amount": [1.0, 2.0, 3.0]}))
    regions = stored("regions", pl.DataFrame({"region": ["n", "s"], "label": ["North", "South"]}))
    ctx = make_ctx(tables={"orders": orders, "regions": regions}, previous=orders)
    rel = sql(ctx, SqlConfig(query="select label, sum(amount) total from orders join regions using (region) group by 1 order by 1"))
    assert rel.pl().to_dicts() == [{"label": "North", "total": 4.0}, {"label": "South", "total": 2.0}]
    assert sql(ctx, SqlConfig(query="select count(*) n from input")).fetchall() == [(3,)]


def test_table_names_found_in_query():
    assert tables_in_query({"query": "select * from a join b on a.x = b.x"}) == {"a", "b"}
    assert "orders" in tables_in_query({"query": "select * from orders join x using (id)"})  # unbindable: regex fallback
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
        sql(ctx, SqlConfig.model_construct(query="create table y as select 1; select * from t", multiple_statements=False,
                                           threads=None, memory_limit=None))
    rel = sql(ctx, SqlConfig(query="create temp table y as select 41 + x as x from t; select * from y", multiple_statements=True))
    assert rel.fetchall() == [(42,)]


def test_sandbox_allows_inputs_data_and_cluster_folder_only(make_ctx, stored, tmp_path):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    (tmp_path / "data").mkdir()
    sql(ctx, SqlConfig(query=f"copy (select * from t) to '{tmp_path / 'data' / 'ok.csv'}'")).fetchall()
    assert (tmp_path / "data" / "ok.csv").read_text() == "x\n1\n"
    (tmp_path / "in.csv").write_text("a\n1\n")  # the cluster's own folder
    assert sql(ctx, SqlConfig(query=f"select * from read_csv('{tmp_path / 'in.csv'}')")).fetchall() == [(1,)]
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("a\n1\n")
    for query in (f"select * from read_csv('{outside / 'secret.csv'}')", "select * from read_csv('/etc/passwd')",
                  f"select * from '{tmp_path}/../{outside.name}/secret.csv'"):
        with pytest.raises(PermissionError, match="Cannot access file") as info:
            sql(ctx, SqlConfig(query=query)).fetchall()
        assert "secret.csv" in str(info.value) or "/etc/passwd" in str(info.value)
    with pytest.raises(PermissionError, match=str(outside)):
        sql(ctx, SqlConfig(query=f"copy (select 1) to '{outside / 'owned.csv'}'")).fetchall()
    assert not (outside / "owned.csv").exists()
    with pytest.raises(Exception, match="locked"):
        sql(ctx, SqlConfig(query="set enable_external_access = true")).fetchall()


def test_integer_sums_stay_integers(make_ctx, stored):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1, 2, 3]}, schema={"x": pl.Int64}))})
    out = sql(ctx, SqlConfig(query="select sum(x) as total, count(*) as n from t")).pl()
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
        query: "select * from (values ('ada'), ('x'' union all select ''INJECTED'' --'), ('y''; copy (select ''owned'') to ''OWNED''; select ''')) t(name)"
    - name: Lookup
      uses: satellite/exospherehost/sql
      identifier: lookup
      config:
        query: "select name from names where name in (${{ satellites.names.output.name }}) or name = '${{ satellites.names.output.name }}'"
"""


def test_values_from_data_never_become_sql_in_a_real_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    owned = tmp_path / "owned.csv"
    cluster = parse_cluster(INJECTION.replace("OWNED", str(owned)), str(tmp_path / "c.yaml"))
    result = compile_cluster(cluster).resolve_job_def(cluster.job_name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    out = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__inject" / "lookup.parquet")
    assert sorted(out["name"].to_list()) == sorted(pl.read_parquet(tmp_path / "exo" / "outputs" / "test__inject" / "names.parquet")["name"].to_list())
    assert "INJECTED" not in out["name"].to_list() and out.height == 3
    assert not owned.exists()


def test_two_literal_statements_are_a_located_error(tmp_path):
    from exo_dagster import SpecError

    text = ("version: 0.0.1b\ncluster:\n  identifier: test/two\n  satellites:\n"
            "    - name: Q\n      uses: satellite/exospherehost/sql\n"
            "      config: {query: \"select 1; copy (select 2) to 'x.csv'\"}\n")
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
        query: "select region, count(*) as n, sum(amount) as total from source where flag group by region order by region"
    - name: Write
      uses: satellite/exospherehost/write-table
      identifier: written
      config: {{path: "totals.parquet"}}
"""


def test_the_batch_chain_copies_nothing(tmp_path, monkeypatch, make_ctx):
    """read-table -> sql -> write-table over Parquet (what benchmarks/bench_batch.py times): the source is
    referenced, never copied into exo's store, and the query's rows go from DuckDB to Parquet, not through Python."""
    import duckdb

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    source = tmp_path / "source.parquet"
    duckdb.sql(f"copy (select 'r' || (i % 3) as region, i / 10.0 as amount, i % 2 = 0 as flag from range(5000) t(i)) "
               f"to '{source}' (format parquet, row_group_size 1000)")
    cluster = parse_cluster(BATCH.format(source=source), str(tmp_path / "c.yaml"))
    assert compile_cluster(cluster).resolve_job_def(cluster.job_name).execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    outputs = tmp_path / "exo" / "outputs" / "test__batch"
    assert sorted(p.name for p in outputs.iterdir()) == ["source.parquet.ref.json", "totals.parquet", "written.parquet"]
    expected = duckdb.sql(f"select region, count(*) as n, sum(amount) as total from '{source}' where flag group by region order by region").pl()
    written = pl.read_parquet(tmp_path / "exo" / "totals.parquet")
    assert written.select("region", "n").equals(expected.select("region", "n"))  # float sums: summation order varies
    assert all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(written["total"], expected["total"]))
    # the step hands the IO manager a DuckDB relation (DuckDB's COPY writes it), not rows fetched into Python
    from exo_dagster import StoredTable

    rel = sql(make_ctx(tables={"source": StoredTable(str(source), name="source")}), SqlConfig(query="select count(*) from source"))
    assert isinstance(rel, duckdb.DuckDBPyRelation)


def test_read_only_queries_share_a_sandbox_but_never_see_each_others_views(make_ctx, stored, tmp_path):
    import duckdb

    from exo_dagster.sdk import duck

    a = make_ctx(tables={"a": stored("a", pl.DataFrame({"x": [1]}))})
    b = make_ctx(tables={"b": stored("b", pl.DataFrame({"x": [2]}))})
    first = sql(a, SqlConfig(query="select x from a"))
    databases = len(duck._sandboxes)
    assert sql(b, SqlConfig(query="select x from b")).fetchall() == [(2,)]
    assert len(duck._sandboxes) == databases  # the same sandbox: one shared database, a cursor each
    with pytest.raises(duckdb.CatalogException):  # `a` is a view of the first step's cursor only
        sql(b, SqlConfig(query="select x from a")).fetchall()
    assert first.fetchall() == [(1,)]
    # a query that writes gets a database of its own: what it creates is gone for the next step
    made = sql(a, SqlConfig(query="create table kept as select 7 as x; select * from kept", multiple_statements=True))
    assert made.fetchall() == [(7,)]
    with pytest.raises(duckdb.CatalogException):
        sql(a, SqlConfig(query="select * from kept")).fetchall()
    with pytest.raises(PermissionError, match="Cannot access file"):  # the shared sandbox is locked as its own is
        sql(a, SqlConfig(query="select * from read_csv('/etc/passwd')")).fetchall()
