import polars as pl
import pytest

from satellites.read_table import ReadTableConfig, read_table


def test_reads_csv_jsonl_parquet_from_a_column_of_paths(tmp_path, make_ctx):
    pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}).write_csv(tmp_path / "one.csv")
    pl.DataFrame({"id": [3], "v": ["c"]}).write_ndjson(tmp_path / "two.jsonl")
    pl.DataFrame({"id": [4], "v": ["d"], "extra": [True]}).write_parquet(tmp_path / "three.parquet")
    ctx = make_ctx(input={"paths": ["one.csv", str(tmp_path / "two.jsonl"), "three.parquet"]})
    out = read_table(ctx, ReadTableConfig(source_column="file")).collect()
    assert out["id"].to_list() == [1, 2, 3, 4]
    assert out["extra"].to_list() == [None, None, None, True]
    assert out["file"].to_list()[-1] == str(tmp_path / "three.parquet")


def test_previous_step_path_column_and_unknown_format(tmp_path, make_ctx, stored):
    pl.DataFrame({"n": [7]}).write_csv(tmp_path / "x.csv")
    files = stored("files", pl.DataFrame({"path": [str(tmp_path / "x.csv")]}))
    assert read_table(make_ctx(previous=files), ReadTableConfig()).collect()["n"].to_list() == [7]
    with pytest.raises(ValueError, match="set `format:`"):
        read_table(make_ctx(input={"paths": "data.weird"}), ReadTableConfig())


def test_parquet_is_referenced_not_copied(tmp_path, make_ctx):
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "p1.parquet")
    pl.DataFrame({"a": [2]}).write_parquet(tmp_path / "p2.parquet")
    one = read_table(make_ctx(), ReadTableConfig(path="p1.parquet"))
    assert one.path == str(tmp_path / "p1.parquet")
    both = read_table(make_ctx(input={"paths": ["p1.parquet", "p2.parquet"]}), ReadTableConfig())
    assert both.collect()["a"].to_list() == [1, 2]
    copied = read_table(make_ctx(), ReadTableConfig.model_validate({"path": "p1.parquet", "copy": True}))
    assert isinstance(copied, pl.LazyFrame)


def test_excel_sheet(tmp_path, make_ctx):
    pl.DataFrame({"k": ["x", "y"], "v": [1.5, 2.5]}).write_excel(tmp_path / "book.xlsx", worksheet="data")
    out = read_table(make_ctx(), ReadTableConfig(path="book.xlsx", sheet="data")).collect()
    assert out.to_dicts() == [{"k": "x", "v": 1.5}, {"k": "y", "v": 2.5}]


def test_malformed_csv_rows_land_in_error_column(tmp_path, make_ctx):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5,6\n5,6\n")
    ctx = make_ctx()
    out = read_table(ctx, ReadTableConfig(path="bad.csv")).collect()
    assert out.filter(pl.col("_error").is_null()).select("a", "b").to_dicts() == [{"a": 1, "b": 2}, {"a": 5, "b": 6}]
    [error] = out["_error"].drop_nulls().to_list()
    assert error.startswith(f"{tmp_path / 'bad.csv'}:3: ") and "Columns" in error
    assert ctx.metadata["exo/rows_failed"] == 1
    ctx.on_row_error = "fail"
    with pytest.raises(ValueError, match="bad.csv:3"):
        read_table(ctx, ReadTableConfig(path="bad.csv"))


def test_missing_file_names_it(tmp_path, make_ctx):
    with pytest.raises(ValueError, match="cannot read `.*nope.csv` as csv"):
        read_table(make_ctx(), ReadTableConfig(path="nope.csv"))
