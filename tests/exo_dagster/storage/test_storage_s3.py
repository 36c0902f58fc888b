"""S3 storage against a real S3-compatible server on loopback (moto's server mode)."""

from __future__ import annotations

import io

import boto3
import dagster as dg
import polars as pl
import pytest

from exo_dagster import compile_cluster, parse_cluster
from tests.loopback import s3_server

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"exo-{tmp_path.name.lower().replace('_', '-')[:40]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/s3
  satellites:
    - name: List
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {{provider: s3, folder-path: {bucket}/in, allowed-extensions: [csv]}}
    - name: Read
      uses: satellite/exospherehost/read-table
      identifier: rows
      input: {{paths: "${{{{ satellites.files.output.path }}}}"}}
    - name: Total
      uses: satellite/exospherehost/sql
      identifier: total
      config: {{query: "select sum(n) as total, count(*) as rows from rows"}}
    - name: Write
      uses: satellite/exospherehost/write-table
      identifier: written
      config: {{path: "s3://{bucket}/out/total.parquet"}}
"""


def test_cluster_reads_and_writes_s3_with_outputs_stored_in_s3(s3, monkeypatch):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="in/a.csv", Body=b"n\n1\n2\n")
    client.put_object(Bucket=bucket, Key="in/b.csv", Body=b"n\n39\n")
    client.put_object(Bucket=bucket, Key="in/skip.txt", Body=b"x")
    monkeypatch.setenv("EXO_OUTPUTS", f"s3://{bucket}/outputs")
    cluster = parse_cluster(CLUSTER.format(bucket=bucket), "s3.yaml")
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"outputs/test__s3/{n}.parquet" for n in ("files", "rows", "total", "written")} <= keys
    assert not [k for k in keys if k.endswith(".tmp")]  # atomic: no temporary object left behind
    body = client.get_object(Bucket=bucket, Key="out/total.parquet")["Body"].read()
    import io

    assert pl.read_parquet(io.BytesIO(body)).to_dicts() == [{"total": 42, "rows": 3}]
    files = pl.read_parquet(
        io.BytesIO(client.get_object(Bucket=bucket, Key="outputs/test__s3/files.parquet")["Body"].read())
    )
    assert files["path"].to_list() == [f"s3://{bucket}/in/a.csv", f"s3://{bucket}/in/b.csv"]
    assert files["size"].to_list() == [6, 5]


FAN_OUT = """\
version: 0.0.1b
cluster:
  identifier: test/s3chunks
  satellites:
    - name: Words
      uses: satellite/exospherehost/sql
      identifier: words
      config: {query: "select 'w' || i as word, i from range(10) t(i) order by i"}
    - name: Tag
      uses: satellite/test/s3-tag
      identifier: tagged
      fan-out: {chunk-rows: 3}
      input: {word: "$${{ satellites.words.output.word }}"}
    - name: Count
      uses: satellite/exospherehost/sql
      identifier: counted
      config: {query: "select count(*) as n, string_agg(tagged, ',' order by tagged) as tags from tagged"}
"""


def _tag_registry():
    from exo_dagster import Registry, SatelliteConfig, StepContext, satellite
    from exo_dagster.catalog.registry import builtin_registry

    extra = Registry()

    @satellite("satellite/test/s3-tag", config=SatelliteConfig, registry=extra)
    def tag(ctx: StepContext, config):
        return ctx.rows.collect().with_columns((pl.col("word") + "!").alias("tagged"))

    return builtin_registry().merged(extra)


def test_fan_out_chunks_live_in_s3_and_catalog_views_read_s3_offline(s3, monkeypatch, tmp_path):
    """No shared disk: chunk files go where the outputs go (S3), the merge references them there, and the
    DuckDB catalog's views read S3 through fsspec (no httpfs download), for `exo query` and sql steps."""
    from exo_dagster.storage import views_query

    client, bucket = s3
    monkeypatch.setenv("EXO_OUTPUTS", f"s3://{bucket}/outputs")
    cluster = parse_cluster(FAN_OUT, "chunks.yaml", registry=_tag_registry())
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    chunks = sorted(k for k in keys if k.startswith("outputs/_chunks/test__s3chunks__tagged/"))
    assert [k.rsplit("/", 1)[1] for k in chunks] == [".exo-chunks.json"] + [f"{i:06d}.parquet" for i in range(4)]
    assert not (tmp_path / "exo" / "chunks").exists()  # nothing written to the local data folder
    assert "outputs/test__s3chunks/tagged.parquet.ref.json" in keys  # the merge references the chunks, no copy
    assert "outputs/test__s3chunks/tagged.parquet" not in keys
    assert [k for k in keys if k.startswith("outputs/_intermediates/")]  # ops' in-between values beside the outputs
    counted = pl.read_parquet(
        io.BytesIO(client.get_object(Bucket=bucket, Key="outputs/test__s3chunks/counted.parquet")["Body"].read())
    )
    assert counted.to_dicts() == [{"n": 10, "tags": ",".join(sorted(f"w{i}!" for i in range(10)))}]

    out = views_query.query("select word, tagged from s3chunks.tagged order by word")
    assert out.rows == [(f"w{i}", f"w{i}!") for i in range(10)]
    assert views_query.query("select n from s3chunks.counted").rows == [(10,)]
    with pytest.raises(views_query.QueryError, match="read-only|reads only"):  # still sandboxed: no other object
        views_query.query(f"select * from read_parquet('s3://{bucket}/outputs/test__s3chunks/words.parquet.tmp')")

    # another host, whose own catalog saw none of it written: `exo catalog sync` lists the outputs in S3
    import os
    import subprocess
    import sys
    from pathlib import Path

    other = tmp_path / "other-host"
    env = {**os.environ, "EXO_DATA_DIR": str(other)}
    exo = str(Path(sys.executable).parent / "exo")
    synced = subprocess.run([exo, "catalog", "sync"], env=env, capture_output=True, text=True)
    assert synced.returncode == 0 and "3 view(s): s3chunks.counted, s3chunks.tagged, s3chunks.words" in synced.stdout, (
        synced
    )
    there = str(other / "catalog.duckdb")
    assert views_query.query("select count(*), min(tagged) from s3chunks.tagged", there).rows == [(10, "w0!")]
    assert views_query.query("select n from s3chunks.counted", there).rows == [(10,)]


def test_a_newer_runs_merge_removes_the_older_runs_chunk_objects(s3, monkeypatch):
    """Chunk objects of a run whose merge was superseded by a later run's are deleted from the bucket."""
    client, bucket = s3
    monkeypatch.setenv("EXO_OUTPUTS", f"s3://{bucket}/outputs")
    cluster = parse_cluster(FAN_OUT, "chunks.yaml", registry=_tag_registry())
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)

    def chunk_runs() -> set[str]:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="outputs/_chunks/").get("Contents", [])]
        return {k.split("/")[3] for k in keys}

    with dg.instance_for_test() as instance:
        first = job.execute_in_process(instance=instance)
        assert first.success and chunk_runs() == {first.run_id}
        second = job.execute_in_process(instance=instance)
        assert second.success and chunk_runs() == {second.run_id}
    counted = pl.read_parquet(
        io.BytesIO(client.get_object(Bucket=bucket, Key="outputs/test__s3chunks/counted.parquet")["Body"].read())
    )
    assert counted["n"].to_list() == [10]
