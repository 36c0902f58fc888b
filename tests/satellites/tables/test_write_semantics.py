"""write-table's semantics as a matrix: mode (overwrite, append, upsert) x target (Parquet, CSV, JSONL, DuckDB, an S3
URL, a per-partition path) x case (a key repeated in one input, null keys, a new column, a missing column, a changed
type, an empty input, a re-run). Each cell does what the README's table says, or fails with an error naming the
column or key and leaves the target exactly as it was (the same bytes; for DuckDB the same table)."""

from __future__ import annotations

import itertools
import random

import duckdb
import polars as pl
import pytest

from exo_dagster.sdk.table_write import WriteRefused
from satellites.tables.write_table import WriteTableConfig, write_table

FORMATS = ["parquet", "csv", "jsonl", "duckdb"]
READERS = {
    "parquet": pl.read_parquet,
    "csv": lambda p: pl.read_csv(p, infer_schema_length=None),
    "jsonl": lambda p: pl.read_ndjson(p, infer_schema_length=None),
}
BATCHES = 60
BASE = pl.DataFrame({"id": [1, 2, 3], "amount": [10, 20, 30]})


class Target:
    """One write-table target under a test's data folder, written from real input Parquet files."""

    def __init__(self, tmp_path, make_ctx, stored, fmt: str):
        self.fmt, self.make_ctx, self.stored = fmt, make_ctx, stored
        self.file = tmp_path / "data" / f"t.{fmt}"
        self.inputs = itertools.count()

    def write(self, frame: pl.DataFrame, **config) -> dict:
        table = self.stored(f"in{next(self.inputs)}", frame)
        extra = {"table": "t"} if self.fmt == "duckdb" else {}
        config = WriteTableConfig(path=self.file.name, **extra, **config)
        return write_table(self.make_ctx(previous=table), config).row(0, named=True)

    def read(self) -> pl.DataFrame:
        if self.fmt == "duckdb":
            with duckdb.connect(str(self.file), read_only=True) as con:
                return con.sql("select * from t").pl()
        return READERS[self.fmt](self.file)

    def state(self):
        """What must not change when a write is refused: the file's bytes (DuckDB: the table's types and rows),
        and the folder's listing (no temporary file left)."""
        listing = sorted(p.name for p in self.file.parent.iterdir())
        if self.fmt == "duckdb":
            frame = self.read()
            return listing, frame.schema, frame.rows()
        return listing, self.file.read_bytes()

    def refused(self, frame: pl.DataFrame, *words: str, **config) -> str:
        before = self.state()
        with pytest.raises(WriteRefused) as caught:
            self.write(frame, **config)
        assert self.state() == before, "a refused write changed the target"
        message = str(caught.value)
        for word in words:
            assert word in message, message
        assert "Nothing was written" in message
        return message


@pytest.fixture(params=FORMATS)
def target(request, tmp_path, make_ctx, stored) -> Target:
    return Target(tmp_path, make_ctx, stored, request.param)


def by_id(frame: pl.DataFrame) -> list[tuple]:
    return frame.sort("id").rows()


# --- a key repeated in one input ---------------------------------------------------------------------------------


def test_upsert_refuses_a_key_repeated_in_the_input_naming_key_and_value(target):
    target.write(BASE)
    target.refused(
        pl.DataFrame({"id": [4, 2, 2], "amount": [1, 2, 3]}),
        "upsert key (id) repeats in the input",
        "id=2 appears 2 times",
        "on-duplicate",
        mode="upsert",
        key=["id"],
    )
    target.refused(
        pl.DataFrame({"id": [1, 1], "day": ["a", "a"], "amount": [1, 2]}),
        "id=1, day='a' appears 2",
        mode="upsert",
        key=["id", "day"],
    )


@pytest.mark.parametrize("keep,expected", [("last", 9), ("first", 1)])
def test_on_duplicate_first_or_last_keeps_one_row_per_key(target, keep, expected):
    target.write(BASE)
    batch = pl.DataFrame({"id": [2, 4, 2], "amount": [1, 5, 9]})
    out = target.write(batch, mode="upsert", key=["id"], on_duplicate=keep)
    assert out["rows"] == 4
    assert by_id(target.read()) == [(1, 10), (2, expected), (3, 30), (4, 5)]


def test_overwrite_and_append_write_a_repeated_key_as_given(target):
    target.write(pl.DataFrame({"id": [1, 1], "amount": [1, 2]}))
    assert by_id(target.read()) == [(1, 1), (1, 2)]
    target.write(pl.DataFrame({"id": [1], "amount": [3]}), mode="append")
    assert sorted(target.read().rows()) == [(1, 1), (1, 2), (1, 3)]


def test_upsert_refuses_a_target_whose_key_already_repeats_or_is_null(target):
    target.write(BASE)
    target.write(pl.DataFrame({"id": [3], "amount": [31]}), mode="append")
    target.refused(
        pl.DataFrame({"id": [1], "amount": [11]}),
        "repeats in the target",
        "id=3 appears 2 times",
        "overwrite the target",
        mode="upsert",
        key=["id"],
    )
    target.write(pl.DataFrame({"id": [None], "amount": [0]}, schema_overrides={"id": pl.Int64}))
    target.refused(
        pl.DataFrame({"id": [1], "amount": [11]}), "`id` is null in 1 row(s) of the target", mode="upsert", key=["id"]
    )


# --- null keys, missing key columns --------------------------------------------------------------------------------


def test_upsert_refuses_null_keys_naming_the_column(target):
    target.write(BASE)
    target.refused(
        pl.DataFrame({"id": [4, None], "amount": [1, 2]}),
        "key column `id` is null in 1 row(s) of the input",
        mode="upsert",
        key=["id"],
    )
    target.refused(
        pl.DataFrame({"id": [4], "day": [None], "amount": [1]}, schema_overrides={"day": pl.String}),
        "`day` is null",
        mode="upsert",
        key=["id", "day"],
        on_duplicate="last",
    )


def test_overwrite_and_append_keep_null_keys_as_given(target):
    target.write(pl.DataFrame({"id": [None, 1], "amount": [1, 2]}))
    target.write(pl.DataFrame({"id": [None], "amount": [3]}), mode="append")
    assert target.read()["id"].null_count() == 2


def test_upsert_names_a_key_column_missing_from_the_input_or_the_target(target):
    target.write(BASE)
    target.refused(
        pl.DataFrame({"ident": [1], "amount": [1]}),
        "key column `id` is not in the input",
        "ident",
        mode="upsert",
        key=["id"],
    )
    target.refused(
        pl.DataFrame({"id": [1], "sku": ["a"], "amount": [1]}),
        "key column `sku` is not in the target",
        mode="upsert",
        key=["id", "sku"],
    )


# --- new, missing and retyped columns -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_new_column_is_added_null_in_the_old_rows(target, mode):
    target.write(BASE)
    out = target.write(pl.DataFrame({"id": [3, 4], "amount": [33, 40], "note": ["x", "y"]}), mode=mode, key=["id"])
    expected = {
        "append": [(1, 10, None), (2, 20, None), (3, 30, None), (3, 33, "x"), (4, 40, "y")],
        "upsert": [(1, 10, None), (2, 20, None), (3, 33, "x"), (4, 40, "y")],
    }[mode]
    assert by_id(target.read().select("id", "amount", "note")) == expected
    assert out["rows"] == len(expected)


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_missing_column_is_null_in_the_new_rows(target, mode):
    target.write(BASE)
    target.write(pl.DataFrame({"id": [4]}), mode=mode, key=["id"])
    frame = target.read()
    assert frame.columns == ["id", "amount"]
    assert by_id(frame) == [(1, 10), (2, 20), (3, 30), (4, None)]
    assert frame.schema["amount"] == pl.Int64


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_a_changed_type_is_refused_naming_column_and_both_types(target, mode):
    target.write(BASE)
    message = target.refused(
        pl.DataFrame({"id": [4], "amount": ["ten"]}),
        "`amount` is Int64 in the target and String in the input",
        "schema: evolve",
        mode=mode,
        key=["id"],
    )
    assert str(target.file) in message
    target.refused(
        pl.DataFrame({"id": [4], "amount": [10.5]}),
        "`amount` is Int64 in the target and Float64",
        mode=mode,
        key=["id"],
    )


def test_schema_evolve_widens_the_stored_column_old_rows_converted(target):
    target.write(BASE)
    target.write(pl.DataFrame({"id": [4], "amount": ["ten"]}), mode="append", schema_changes="evolve")
    frame = target.read()
    assert frame.schema["amount"] == pl.String
    assert by_id(frame) == [(1, "10"), (2, "20"), (3, "30"), (4, "ten")]
    target.write(pl.DataFrame({"id": [2], "amount": [2.5]}), mode="upsert", key=["id"], schema_changes="evolve")
    assert by_id(target.read()) == [(1, "10"), (2, "2.5"), (3, "30"), (4, "ten")]


def test_lossless_values_are_accepted_and_the_stored_type_kept(target):
    target.write(pl.DataFrame({"id": [1], "price": [1.5]}))
    target.write(pl.DataFrame({"id": pl.Series([2], dtype=pl.Int32), "price": [3]}), mode="append")  # int into float
    target.write(pl.DataFrame({"id": [3], "price": [None]}, schema_overrides={"price": pl.String}), mode="append")
    frame = target.read()
    assert frame.schema == pl.Schema({"id": pl.Int64, "price": pl.Float64})
    assert by_id(frame) == [(1, 1.5), (2, 3.0), (3, None)]
    # 2**53 + 1 has no exact float: refused, not rounded
    target.refused(
        pl.DataFrame({"id": [4], "price": [2**53 + 1]}), "`price` is Float64 in the target and Int64", mode="append"
    )


def test_a_duckdb_table_made_elsewhere_keeps_its_narrower_integer(tmp_path, make_ctx, stored):
    """A table another tool created with INTEGER: Polars' Int64 values that fit go in, the column stays INTEGER;
    one that does not fit is refused, naming both types."""
    target = Target(tmp_path, make_ctx, stored, "duckdb")
    target.file.parent.mkdir()
    with duckdb.connect(str(target.file)) as con:
        con.execute("create table t (id integer, amount integer)")
        con.execute("insert into t values (1, 10)")
    target.write(pl.DataFrame({"id": [2], "amount": [20]}), mode="upsert", key=["id"])
    assert target.read().schema == pl.Schema({"id": pl.Int32, "amount": pl.Int32})
    target.refused(
        pl.DataFrame({"id": [3], "amount": [2**40]}), "`amount` is Int32 in the target and Int64", mode="append"
    )
    assert by_id(target.read()) == [(1, 10), (2, 20)]


def test_overwrite_replaces_columns_and_types(target):
    target.write(BASE)
    target.write(pl.DataFrame({"id": ["a"], "other": [True]}))
    frame = target.read()
    assert frame.rows() == [("a", True)] and frame.columns == ["id", "other"]


# --- empty input, re-runs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_an_empty_input_leaves_the_target_as_it_was(target, mode):
    target.write(BASE)
    before = target.state()
    empty = pl.DataFrame(schema={"id": pl.Int64, "amount": pl.String, "new": pl.Int8})
    out = target.write(empty, mode=mode, key=["id"])
    assert target.state() == before and out["rows"] == 3


def test_overwrite_with_an_empty_input_empties_the_target(target):
    target.write(BASE)
    out = target.write(pl.DataFrame(schema={"id": pl.Int64, "amount": pl.Int64}))
    assert out["rows"] == 0
    if target.fmt != "jsonl":  # an empty JSONL file has no columns to read back
        assert target.read().height == 0 and target.read().columns == ["id", "amount"]


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_writing_into_an_emptied_target(target, mode):
    target.write(pl.DataFrame(schema={"id": pl.Int64, "amount": pl.Int64}))
    assert target.write(BASE, mode=mode, key=["id"])["rows"] == 3
    assert by_id(target.read()) == BASE.rows()


@pytest.mark.parametrize("mode", ["overwrite", "upsert"])
def test_a_rerun_with_the_same_input_leaves_the_same_target(target, mode):
    target.write(pl.DataFrame({"id": [0, 2], "amount": [1, 1]}))
    batch = pl.DataFrame({"id": [2, 5, 1], "amount": [22, 50, 11], "day": ["d1", "d1", "d1"]})
    target.write(batch, mode=mode, key=["id"])
    once = target.state()
    target.write(batch, mode=mode, key=["id"])
    assert target.state() == once


def test_append_rerun_adds_the_rows_again(target):
    target.write(BASE)
    target.write(BASE, mode="append")
    assert target.read().height == 6


def test_internal_row_key_column_is_not_written(target):
    target.write(pl.DataFrame({"id": [1], "amount": [2], "_row_key": ["abc"]}))
    assert target.read().columns == ["id", "amount"]
    target.file.unlink()
    target.write(pl.DataFrame({"id": [1], "_row_key": ["abc"]}), mode="upsert", key=["id", "_row_key"])
    assert target.read().columns == ["id", "_row_key"]  # kept where the user keys on it


# --- the ingestion case, and a random walk checked against an independent model ----------------------------------


def test_two_drops_in_one_run_with_overlapping_keys(target):
    """A files trigger batching two drops into one run: 45 rows for 40 order ids. The default refuses; `last`
    gives one row per order, the later drop winning, and the revenue a plain dict computes."""
    rng = random.Random(22)
    first = [(i, rng.randint(100, 9_999)) for i in range(1, 26)]
    second = [(i, rng.randint(100, 9_999)) for i in range(21, 41)]
    target.write(pl.DataFrame({"id": [0], "amount": [500]}))
    batch = pl.DataFrame(first + second, schema={"id": pl.Int64, "amount": pl.Int64}, orient="row")
    assert batch.height == 45
    target.refused(batch, "id=21 appears 2 times", "(5 key value(s) repeat)", mode="upsert", key=["id"])
    target.write(batch, mode="upsert", key=["id"], on_duplicate="last")
    expected = {0: 500}
    for order, amount in first + second:
        expected[order] = amount
    frame = target.read()
    assert frame.height == 41 == frame["id"].n_unique()
    assert frame["amount"].sum() == sum(expected.values())
    assert dict(frame.rows()) == expected


@pytest.mark.slow
def test_random_upserts_match_an_independent_model(target):
    """Random batches (repeats and empties included) upserted with `on-duplicate: last`, each compared with a
    dict: keys unique and every value the last one written (DuckDB: fewer, each write opens the database)."""
    rng = random.Random(2022)
    model: dict[int, int] = {}
    for step in range(BATCHES if target.fmt != "duckdb" else 12):
        rows = [(rng.randint(0, 20), rng.randint(-1000, 1000)) for _ in range(rng.choice([0, 1, 3, 8]))]
        frame = pl.DataFrame(rows, schema={"id": pl.Int64, "amount": pl.Int64}, orient="row")
        out = target.write(frame, mode="upsert", key=["id"], on_duplicate="last")
        for order, amount in rows:
            model[order] = amount
        assert out["rows"] == len(model), step
        if model:
            assert dict(target.read().rows()) == model, step


# --- configuration -----------------------------------------------------------------------------------------------


def test_a_refusal_is_a_permanent_error_retries_cannot_fix():
    from exo_dagster.sdk import step_errors

    assert step_errors.kind(WriteRefused("x")) == step_errors.PERMANENT


def test_config_keys_and_their_misuse():
    config = WriteTableConfig.model_validate({"path": "t.parquet", "mode": "append", "schema": "evolve"})
    assert config.schema_changes == "evolve"
    with pytest.raises(ValueError, match="`on-duplicate` applies to `mode: upsert`"):
        WriteTableConfig.model_validate({"path": "t.parquet", "mode": "append", "on-duplicate": "last"})
    with pytest.raises(ValueError, match="overwrite replaces the columns and types"):
        WriteTableConfig.model_validate({"path": "t.parquet", "schema": "evolve"})
    with pytest.raises(ValueError):
        WriteTableConfig.model_validate({"path": "t.parquet", "mode": "upsert", "key": ["id"], "on-duplicate": "any"})


# --- remote URL (S3 on loopback) and a partitioned cluster's per-partition target ---------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    from tests.loopback import s3_server

    with s3_server() as endpoint:  # one per module: s3fs keeps its filesystem (and endpoint) between tests
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="semantics")
    return client


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s3.parquet", "s3.csv"])
def test_an_s3_target_has_the_same_semantics(s3, make_ctx, stored, name):
    import io

    inputs = itertools.count()
    url = f"s3://semantics/{name}"

    def write(frame, **config):
        table = stored(f"s3in{next(inputs)}", frame)
        return write_table(make_ctx(previous=table), WriteTableConfig(path=url, **config))

    def body() -> bytes:
        return s3.get_object(Bucket="semantics", Key=name)["Body"].read()

    write(BASE)
    before = body()
    with pytest.raises(WriteRefused, match="id=2 appears 2 times"):
        write(pl.DataFrame({"id": [2, 2], "amount": [1, 2]}), mode="upsert", key=["id"])
    with pytest.raises(WriteRefused, match="`amount` is Int64 in the target and String in the input"):
        write(pl.DataFrame({"id": [4], "amount": ["x"]}), mode="append")
    assert body() == before
    batch = pl.DataFrame({"id": [2, 4], "amount": [22, 40]})
    assert write(batch, mode="upsert", key=["id"])["rows"].to_list() == [4]
    once = body()
    write(batch, mode="upsert", key=["id"])
    assert body() == once
    read = pl.read_parquet if name.endswith("parquet") else pl.read_csv
    assert by_id(read(io.BytesIO(once))) == [(1, 10), (2, 22), (3, 30), (4, 40)]
    assert not [o["Key"] for o in s3.list_objects_v2(Bucket="semantics")["Contents"] if o["Key"].endswith(".tmp")]


PARTITIONED = """\
version: 0.0.1b
cluster:
  identifier: test/regions
  partitions:
    static: [north, south]
  satellites:
    - name: Orders
      uses: satellite/exospherehost/sql
      identifier: orders
      config: {query: "select * from (values (1, 10), (2, 20), (2, 25), (3, 30)) t(id, amount)"}
    - name: Save
      uses: satellite/exospherehost/write-table
      identifier: saved
      config: {path: "sales/${{ partition.key }}.parquet", mode: upsert, key: [id], on-duplicate: last}
"""


def test_a_partition_rerun_leaves_its_target_as_the_first_run_did(tmp_path, monkeypatch):
    """End to end (Dagster, in process): a per-partition target is a file per key; re-running the partition
    re-applies the same upsert and leaves the same bytes; the other partition's file is untouched."""
    import dagster as dg

    from exo_dagster import compile_cluster, parse_cluster
    from exo_dagster.catalog.registry import builtin_registry

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    for name in ("EXO_OUTPUTS", "EXO_CATALOG", "EXO_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    cluster = parse_cluster(PARTITIONED, str(tmp_path / "regions.yaml"), registry=builtin_registry())
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    sales = tmp_path / "data" / "sales"
    instance = dg.DagsterInstance.ephemeral()
    assert job.execute_in_process(instance=instance, partition_key="north").success
    once = (sales / "north.parquet").read_bytes()
    assert job.execute_in_process(instance=instance, partition_key="north").success
    assert (sales / "north.parquet").read_bytes() == once
    assert by_id(pl.read_parquet(sales / "north.parquet")) == [(1, 10), (2, 25), (3, 30)]
    assert sorted(p.name for p in sales.iterdir()) == ["north.parquet"]
