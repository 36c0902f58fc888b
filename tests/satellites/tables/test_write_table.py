import polars as pl
import pytest

from satellites.tables.write_table import WriteTableConfig, write_table


@pytest.mark.parametrize(
    "name,reader", [("out.parquet", pl.read_parquet), ("out.csv", pl.read_csv), ("out.jsonl", pl.read_ndjson)]
)
def test_writes_each_format_under_the_data_folder(tmp_path, make_ctx, stored, name, reader):
    table = stored("t", pl.DataFrame({"a": [1, 2, 3]}))
    out = write_table(make_ctx(previous=table), WriteTableConfig(path=f"reports/{name}"))
    target = tmp_path / "data" / "reports" / name
    assert out.to_dicts() == [{"path": str(target), "format": name.split(".")[1], "rows": 3}]
    assert reader(target)["a"].to_list() == [1, 2, 3]
    assert [p.name for p in target.parent.iterdir()] == [name]  # no temp file left behind


def test_needs_a_table(make_ctx):
    with pytest.raises(ValueError, match="needs `input.table"):
        write_table(make_ctx(), WriteTableConfig(path="x.parquet"))


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.jsonl"])
def test_append_and_upsert_by_key(tmp_path, make_ctx, stored, name):
    first = stored("first", pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    second = stored("second", pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}))
    write_table(make_ctx(previous=first), WriteTableConfig(path=name))
    out = write_table(make_ctx(previous=second), WriteTableConfig(path=name, mode="upsert", key=["id"]))
    assert out["rows"].to_list() == [3]
    reader = {"parquet": pl.read_parquet, "csv": pl.read_csv, "jsonl": pl.read_ndjson}[name.split(".")[1]]
    assert sorted(reader(tmp_path / "data" / name).rows()) == [(1, "a"), (2, "B"), (3, "c")]
    write_table(make_ctx(previous=second), WriteTableConfig(path=name, mode="append"))
    assert reader(tmp_path / "data" / name).height == 5


def test_duckdb_table_modes(tmp_path, make_ctx, stored):
    import duckdb

    first = stored("first", pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}))
    second = stored("second", pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}))
    write_table(make_ctx(previous=first), WriteTableConfig(path="w.duckdb", table="items"))
    out = write_table(
        make_ctx(previous=second), WriteTableConfig(path="w.duckdb", table="items", mode="upsert", key=["id"])
    )
    assert out.to_dicts() == [{"path": f"{tmp_path / 'data' / 'w.duckdb'}#items", "format": "duckdb", "rows": 3}]
    with duckdb.connect(str(tmp_path / "data" / "w.duckdb")) as con:
        assert con.execute("select * from items order by id").fetchall() == [(1, "a"), (2, "B"), (3, "c")]


def test_upsert_without_key_is_a_config_error():
    with pytest.raises(ValueError, match="needs `key"):
        WriteTableConfig(path="x.parquet", mode="upsert")
