"""A relative file path in SQL resolves against the cluster's folder (as read-table's `path:` does), found by
DuckDB's own parser: only file arguments and quoted file names in FROM move; every other string stays."""

from __future__ import annotations

import duckdb
import pytest

from exo_dagster.sdk.sql_paths import anchor

BASE = "/clusters/acme"


@pytest.mark.parametrize(
    "query, expected",
    [
        (
            "select * from read_csv('data/x.csv', header=true)",
            "select * from read_csv('/clusters/acme/data/x.csv', header=true)",
        ),
        ("select * from 'data/y.parquet'", "select * from '/clusters/acme/data/y.parquet'"),
        ('select * from "data/y.parquet"', 'select * from "/clusters/acme/data/y.parquet"'),
        (
            "select * from read_parquet(['p/1.parquet', '/abs/2.parquet', 's3://b/k.parquet'])",
            "select * from read_parquet(['/clusters/acme/p/1.parquet', '/abs/2.parquet', 's3://b/k.parquet'])",
        ),
        ("select '€' as e, * from 'dätä/x.csv'", "select '€' as e, * from '/clusters/acme/dätä/x.csv'"),
        ("select * from read_csv('it''s.csv')", "select * from read_csv('/clusters/acme/it''s.csv')"),
        (
            "select * from glob('data/*.csv') where file like 'data/%'",
            "select * from glob('/clusters/acme/data/*.csv') where file like 'data/%'",
        ),
        ("select * from read_json('../shared/x.json')", "select * from read_json('/clusters/shared/x.json')"),
    ],
)
def test_file_positions_become_absolute_under_the_cluster_folder(query, expected):
    assert anchor(query, BASE) == expected


@pytest.mark.parametrize(
    "query",
    [
        "select 'data/x.csv' as p",  # a value, not a file
        "select * from orders where path = 'data/x.csv'",
        "select * from read_csv('/abs/x.csv')",
        "select * from read_csv('s3://bucket/x.csv')",
        "select * from read_csv('~/x.csv')",
        "select * from orders",
        "copy (select 1) to 'x.csv'",  # not a SELECT: left as written, the sandbox decides
        "select * from read_csv(",  # does not parse: left for DuckDB's own message
    ],
)
def test_everything_else_is_left_as_written(query):
    assert anchor(query, BASE) == query


def test_the_rewritten_query_reads_the_cluster_folders_file_from_anywhere(tmp_path, monkeypatch):
    cluster = tmp_path / "cluster"
    (cluster / "data").mkdir(parents=True)
    (cluster / "data" / "x.csv").write_text("a,b\n1,2\n3,4\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    query = anchor("select sum(a) + sum(b) as t from read_csv('data/x.csv')", str(cluster))
    with duckdb.connect() as con:
        con.execute("set allowed_directories = ?", [[str(cluster) + "/"]])
        con.execute("set enable_external_access = false")
        assert con.execute(query).fetchall() == [(10,)]
