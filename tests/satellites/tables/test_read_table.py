import polars as pl
import pytest

from satellites.tables.read_table import ReadTableConfig, read_table


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
    with pytest.raises(FileNotFoundError) as raised:
        read_table(make_ctx(), ReadTableConfig(path="nope.csv"))
    assert str(raised.value) == f"read-table: missing file: {tmp_path / 'nope.csv'}"
    assert raised.value.config_key == "path"


# -- bad data (issue 10) -----------------------------------------------------------------------
def test_malformed_jsonl_names_file_and_line_and_empty_jsonl_is_no_rows(tmp_path, make_ctx):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"`.*bad\.jsonl` line 3 is not valid JSON"):
        read_table(make_ctx(), ReadTableConfig(path="bad.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "ok.jsonl").write_text('{"a": 1}\n')
    out = read_table(make_ctx(input={"paths": ["empty.jsonl", "ok.jsonl"]}), ReadTableConfig()).collect()
    assert out["a"].to_list() == [1]


def test_truncated_parquet_fails_naming_the_file_and_stores_no_reference(tmp_path, monkeypatch):
    import dagster as dg

    from exo_dagster import compile_cluster, parse_cluster

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    good = pl.DataFrame({"a": list(range(1000))})
    good.write_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.parquet").write_bytes((tmp_path / "t.parquet").read_bytes()[:-100])  # cut off the footer
    text = (
        "version: 0.0.1b\ncluster:\n  identifier: test/bad\n  satellites:\n"
        "    - {name: Read, uses: satellite/exospherehost/read-table, identifier: read, config: {path: t.parquet}}\n"
    )
    cluster = parse_cluster(text, str(tmp_path / "c.yaml"))
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert f"`{tmp_path / 't.parquet'}` is not a readable Parquet file" in failure.event_specific_data.error.to_string()
    assert list((tmp_path / "exo").rglob("*.ref.json")) == []


def test_csv_schema_drift_is_an_error_unless_union_by_name(tmp_path, make_ctx):
    (tmp_path / "a.csv").write_text("id,amount\n1,10\n2,20\n")
    (tmp_path / "b.csv").write_text("id,amount\n3,n/a\n")
    (tmp_path / "c.csv").write_text("id,amount,note\n4,25,late\n")
    (tmp_path / "e.csv").write_text("id,amount\n6,2.5\n")
    (tmp_path / "d.csv").write_text("id,amount\n5,\n")  # an empty column fits any type
    with pytest.raises(
        ValueError, match=r"column `amount` is (String|VARCHAR).* in `.*b\.csv` but Int64 in `.*a\.csv`.*union-by-name"
    ):
        read_table(make_ctx(input={"paths": ["a.csv", "b.csv"]}), ReadTableConfig())
    with pytest.raises(ValueError, match=r"`.*c\.csv` has a column `note`"):
        read_table(make_ctx(input={"paths": ["a.csv", "c.csv"]}), ReadTableConfig())
    assert read_table(make_ctx(input={"paths": ["a.csv", "d.csv"]}), ReadTableConfig()).collect()[
        "amount"
    ].to_list() == [10, 20, None]
    with pytest.raises(ValueError, match=r"column `amount` is Float64 in `.*e\.csv` but Int64"):
        read_table(make_ctx(input={"paths": ["a.csv", "e.csv"]}), ReadTableConfig())
    widened = read_table(
        make_ctx(input={"paths": ["a.csv", "c.csv", "e.csv"]}), ReadTableConfig(union_by_name=True)
    ).collect()
    assert widened.schema["amount"] == pl.Float64 and widened["amount"].to_list() == [10.0, 20.0, 25.0, 2.5]
    assert widened["note"].to_list() == [None, None, "late", None]
    text = read_table(make_ctx(input={"paths": ["a.csv", "b.csv"]}), ReadTableConfig(union_by_name=True)).collect()
    assert text["amount"].to_list() == ["10", "20", "n/a"]


def test_mixed_line_endings_are_read(tmp_path, make_ctx):
    (tmp_path / "mixed.csv").write_bytes(b"a,b\r\n1,x\n2,y\r\n3,z\n")
    out = read_table(make_ctx(), ReadTableConfig(path="mixed.csv")).collect()
    assert out.to_dicts() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}]


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "cp1252"])
def test_encodings(tmp_path, make_ctx, encoding):
    text = "name,city\nZoë,Zürich\nRenée,Besançon\n"
    (tmp_path / "x.csv").write_bytes(text.encode(encoding))
    (tmp_path / "x.jsonl").write_bytes('{"name": "Zoë"}\n'.encode(encoding))
    out = read_table(make_ctx(), ReadTableConfig(path="x.csv", encoding=encoding)).collect()
    assert out["city"].to_list() == ["Zürich", "Besançon"]
    assert read_table(make_ctx(), ReadTableConfig(path="x.jsonl", encoding=encoding)).collect()["name"].to_list() == [
        "Zoë"
    ]
    # read with the default utf-8: a clear error, never garbage
    with pytest.raises(ValueError, match=r"(not valid utf-8|UTF-16 byte order mark).*encoding"):
        read_table(make_ctx(), ReadTableConfig(path="x.csv")).collect()


def test_unknown_encoding_is_a_config_error():
    with pytest.raises(ValueError, match="unknown encoding `klingon`"):
        ReadTableConfig(path="x.csv", encoding="klingon")
