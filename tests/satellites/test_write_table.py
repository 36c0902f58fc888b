import polars as pl
import pytest

from satellites.write_table import WriteTableConfig, write_table


@pytest.mark.parametrize("name,reader", [("out.parquet", pl.read_parquet), ("out.csv", pl.read_csv), ("out.jsonl", pl.read_ndjson)])
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
