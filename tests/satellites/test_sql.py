import polars as pl

from satellites.sql import SqlConfig, sql, tables_in_query


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
