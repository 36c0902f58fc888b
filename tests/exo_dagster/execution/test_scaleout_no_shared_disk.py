"""Scale-out with no shared disk: a PostgreSQL instance, a Redis broker, outputs in S3 (moto's server on
loopback) and two real `dagster-celery` workers, each with its own cwd, DAGSTER_HOME and EXO_DATA_DIR.

A chunked per-row `llm-complete` step (against the loopback OpenAI-compatible server, which counts
requests per prompt) runs its chunks on both workers and merges them from S3. Then a worker is
SIGKILLed mid-chunk: its task is redelivered to the other worker (celery_no_shared_disk.yaml:
acks late, requeue on a lost worker), which skips the rows the dead one had committed to the shared
PostgreSQL row cache: no finished row is asked for twice.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
import yaml

from tests.exo_dagster.execution.test_celery import BIN, Worker, _require_redis
from tests.exo_dagster.scaleout_support import (
    REPO,
    events_of,
    failure_text,
    make_home,
    pg_database,
    pg_query,
    pg_url,
    quiet,
    recon_job,
    use_pg,
    write_clusters,
)
from tests.loopback import s3_server
from tests.satellites.openai_server import OpenAIServer
from tests.services import REDIS

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

BROKER, BACKEND = f"{REDIS.url}/11", f"{REDIS.url}/12"  # db numbers of these tests only
PASSWORD = "exo-nodisk-sentinel"
# What a no-shared-disk deployment sets, as shipped (README "Scaling out"): a task is acknowledged only once it has
# run, so a worker that dies takes nothing with it; Redis hands an unacknowledged task to another worker after the
# visibility timeout (here 15 s, swept every second, instead of the shipped hour).
SHIPPED = yaml.safe_load((REPO / "deploy" / "celery" / "celery-no-shared-disk.yaml").read_text())["execution"]["config"]
CELERY = {
    **SHIPPED["config_source"],
    "broker_transport_options": {
        "visibility_timeout": 15,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
}
DEFS = """
import os
from exo_dagster import compile_clusters, load_cluster_file
defs = compile_clusters([load_cluster_file(f) for f in os.environ["EXO_TEST_CLUSTERS"].split(os.pathsep) if f])
"""


def cluster(identifier: str, rows: int, chunk_rows: int, url: str, concurrency: int, queue: str) -> str:
    name = identifier.split("/")[1]
    return f"""\
version: 0.0.1b
cluster:
  identifier: {identifier}
  executor: celery
  queues: {{gpu: {queue}, cpu: {queue}}}
  satellites:
    - name: Prompts
      uses: satellite/exospherehost/sql
      identifier: prompts
      config: {{query: "select '{name} row ' || i as text from range({rows}) t(i)"}}
    - name: Complete
      uses: satellite/exospherehost/llm-complete
      identifier: answers
      fan-out: {{chunk-rows: {chunk_rows}}}
      config: {{model: gpt-4o-mini, base-url: "{url}", concurrency: {concurrency}}}
      input: {{prompt: "$${{{{ satellites.prompts.output.text }}}}"}}
"""


@pytest.fixture
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def nodisk(tmp_path, monkeypatch, s3_endpoint):
    _require_redis()
    token = uuid.uuid4().hex[:8]
    queue = f"exo-nodisk-{token}"
    server = OpenAIServer(latency=0.05, record=False).start()
    with pg_database("exo_nodisk") as db:
        use_pg(monkeypatch, db, PASSWORD)
        bucket = f"exo-nodisk-{token}"
        aws = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
        }
        for key, value in aws.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
        monkeypatch.setenv("EXO_OUTPUTS", f"s3://{bucket}/outputs")
        monkeypatch.setenv("EXO_ROW_CACHE_URL", pg_url(db))
        code = tmp_path / "code"  # the code every host deploys (the same checkout): cluster files and a defs file
        code.mkdir()
        defs = write_clusters(
            code,
            monkeypatch,
            spread=cluster("exotest/spread", 96, 24, server.url, 4, queue),
            kill=cluster("exotest/kill", 80, 40, server.url, 1, queue),
        )
        defs.write_text(DEFS)
        config = code / "celery.yaml"
        config.write_text(
            yaml.safe_dump({"execution": {"config": {"broker": BROKER, "backend": BACKEND, "config_source": CELERY}}})
        )

        def host(name: str) -> Path:
            """One machine's own folders: nothing below is seen by another host."""
            root = tmp_path / name
            home = make_home(root / "home")
            shutil.copyfile(REPO / "deploy" / "celery" / "dagster.yaml", home / "dagster.yaml")
            return root

        here = host("orchestrator")
        monkeypatch.setenv("DAGSTER_HOME", str(here / "home"))
        monkeypatch.setenv("EXO_DATA_DIR", str(here / "data"))
        with dg.DagsterInstance.get() as instance:  # create the PostgreSQL storages once, before two workers race to
            instance.get_runs(limit=1)
        workers = {}
        try:
            for name in ("wa", "wb"):
                root = host(name)
                env = {
                    **os.environ,
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "DAGSTER_HOME": str(root / "home"),
                    "EXO_DATA_DIR": str(root / "data"),
                    "EXO_TEST_WORKER": name,
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                }
                workers[name] = Worker(f"{name}-{token}", queue, config, env, tmp_path / f"{name}.log", cwd=root)
            for worker in workers.values():
                worker.wait_ready()
            yield {
                "defs": defs,
                "server": server,
                "db": db,
                "bucket": bucket,
                "workers": workers,
                "token": token,
                "s3": boto3.client("s3", endpoint_url=s3_endpoint),
                "tmp": tmp_path,
            }
        finally:
            for worker in workers.values():
                worker.stop()
            server.stop()


def run_config() -> dict:
    return quiet({"execution": {"config": {"broker": BROKER, "backend": BACKEND, "config_source": CELERY}}})


def chunk_workers(instance, run_id: str) -> dict[str, list[str]]:
    """chunk step key -> the Celery workers (hostname before `@`) that executed it, in order."""
    ran: dict[str, list[str]] = {}
    for record in events_of(instance, run_id, dg.DagsterEventType.ENGINE_EVENT):
        meta = record.dagster_event.event_specific_data.metadata
        if "Celery worker" in meta and "__chunk[" in (record.step_key or ""):
            ran.setdefault(record.step_key, []).append(meta["Celery worker"].value.split("@")[0])
    return ran


def merged_rows(setup, job: str) -> pl.DataFrame:
    """The stored output, read back as another host would: the reference in S3, then each chunk file in S3."""
    s3, bucket = setup["s3"], setup["bucket"]
    ref = json.loads(s3.get_object(Bucket=bucket, Key=f"outputs/{job}/answers.parquet.ref.json")["Body"].read())
    frames = []
    for path in ref["paths"]:
        assert path.startswith(f"s3://{bucket}/outputs/_chunks/{job}__answers/"), path
        key = path.split(f"s3://{bucket}/", 1)[1]
        frames.append(pl.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())))
    return pl.concat(frames, how="diagonal_relaxed")


def no_local_outputs(setup) -> None:
    for name in ("orchestrator", "wa", "wb"):
        data = setup["tmp"] / name / "data"
        assert not (data / "outputs").exists() and not (data / "chunks").exists(), (
            f"{name} wrote outputs to its own disk"
        )
        values = [p for p in (setup["tmp"] / name / "home").glob("storage/*/*") if p.name != "compute_logs"]
        assert not values, f"{name} kept step values on its own disk: {values}"


@pytest.mark.timeout(600)
def test_chunks_run_on_both_workers_and_merge_from_s3(nodisk):
    server = nodisk["server"]
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            recon_job("exotest__spread", nodisk["defs"]),
            instance=instance,
            raise_on_error=False,
            run_config=run_config(),
        )
        assert result.success, failure_text(instance, result.run_id)
        ran = chunk_workers(instance, result.run_id)
        starts = {
            r.step_key: r.dagster_event.pid for r in events_of(instance, result.run_id, dg.DagsterEventType.STEP_START)
        }
    token = nodisk["token"]
    assert len(ran) == 4 and all(len(w) == 1 for w in ran.values()), ran
    assert {w[0] for w in ran.values()} == {f"wa-{token}", f"wb-{token}"}, ran  # the chunks ran on both workers
    pids = {w[0]: set() for w in ran.values()}
    for step, workers in ran.items():
        pids[workers[0]].add(starts[step])
    assert pids[f"wa-{token}"].isdisjoint(pids[f"wb-{token}"])  # in two different worker processes

    out = merged_rows(nodisk, "exotest__spread")
    prompts = [f"spread row {i}" for i in range(96)]
    assert out.height == 96 and out["_error"].null_count() == 96
    assert out["text"].to_list() == [f"echo: {p}" for p in prompts]  # every row, merged in order
    assert dict(server.answered) == dict.fromkeys(prompts, 1)  # each row asked once
    assert pg_query(nodisk["db"], "select count(*) from exo_row_cache where cluster = 'exotest__spread'") == [(96,)]
    no_local_outputs(nodisk)


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_chunk_its_chunk_finishes_on_the_other_without_redoing_rows(nodisk):
    server, token, db = nodisk["server"], nodisk["token"], nodisk["db"]
    rows, size = 80, 40
    server.latency = 0.15  # one request at a time: a chunk takes about 6 s, so the kill lands mid-chunk
    outcome: dict = {}
    with dg.DagsterInstance.get() as instance, dg.DagsterInstance.get() as watcher:

        def run() -> None:
            outcome["result"] = dg.execute_job(
                recon_job("exotest__kill", nodisk["defs"]),
                instance=instance,
                raise_on_error=False,
                run_config=run_config(),
            )

        thread = threading.Thread(target=run)
        thread.start()
        victim, chunk, deadline = None, None, time.monotonic() + 300
        while victim is None:
            assert time.monotonic() < deadline and thread.is_alive(), "no chunk got under way on a worker"
            runs = watcher.get_runs(dg.RunsFilter(job_name="exotest__kill"), limit=1)
            if runs:
                for step, workers in chunk_workers(watcher, runs[0].run_id).items():
                    index = int(step.rsplit("[c", 1)[1].rstrip("]"))
                    mine = [f"kill row {i}" for i in range(index * size, (index + 1) * size)]
                    if sum(server.answered[p] for p in mine) >= 5:  # mid-chunk: some rows done, most not
                        victim, chunk = workers[0].split("-")[0], step
                        break
            time.sleep(0.05)
        nodisk["workers"][victim].kill()
        finished = {r for (r,) in pg_query(db, "select result from exo_row_cache where cluster = 'exotest__kill'")}
        finished = {json.loads(r)["text"].removeprefix("echo: ") for r in finished}
        index = int(chunk.rsplit("[c", 1)[1].rstrip("]"))
        finished_here = {p for p in finished if index * size <= int(p.rsplit(" ", 1)[1]) < (index + 1) * size}
        assert 5 <= len(finished_here) < size, len(finished_here)  # the victim had finished some of its rows
        thread.join(timeout=420)
        assert not thread.is_alive(), "the run did not finish after the worker was killed"
        result = outcome["result"]
        assert result.success, failure_text(instance, result.run_id)
        ran = chunk_workers(instance, result.run_id)
        other = "wb" if victim == "wa" else "wa"
        assert ran[chunk] == [f"{victim}-{token}", f"{other}-{token}"], (
            ran
        )  # started on the victim, finished on the other
        starts = [r for r in events_of(instance, result.run_id, dg.DagsterEventType.STEP_START) if r.step_key == chunk]
        assert len(starts) == 2
        succeeded = [
            r for r in events_of(instance, result.run_id, dg.DagsterEventType.STEP_SUCCESS) if r.step_key == chunk
        ]
        assert len(succeeded) == 1
        materialized = instance.get_latest_materialization_event(dg.AssetKey(["exotest", "kill", "answers"]))
        assert materialized is not None and materialized.run_id == result.run_id

    out = merged_rows(nodisk, "exotest__kill")
    prompts = [f"kill row {i}" for i in range(rows)]
    assert out["text"].to_list() == [f"echo: {p}" for p in prompts] and out["_error"].null_count() == rows
    assert {p: server.answered[p] for p in finished} == dict.fromkeys(finished, 1)  # no finished row redone
    assert set(server.answered) == set(prompts)
    twice = [p for p in prompts if server.answered[p] > 1]
    assert len(twice) <= 1 and not set(twice) & finished, twice  # at most the one request in flight at the kill
    no_local_outputs(nodisk)
