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
    assert out["file"].to_list()[-1] == "three.parquet"


def test_previous_step_path_column_and_unknown_format(tmp_path, make_ctx, stored):
    pl.DataFrame({"n": [7]}).write_csv(tmp_path / "x.csv")
    files = stored("files", pl.DataFrame({"path": [str(tmp_path / "x.csv")]}))
    assert read_table(make_ctx(previous=files), ReadTableConfig()).collect()["n"].to_list() == [7]
    with pytest.raises(ValueError, match="set `format:`"):
        read_table(make_ctx(input={"paths": "data.weird"}), ReadTableConfig())
