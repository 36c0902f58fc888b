"""Scale-out with no shared disk: one Celery worker vs two, on a chunked per-row `llm-complete` step.

The shape of tests/exo_dagster/execution/test_scaleout_no_shared_disk.py at full size: a PostgreSQL
instance and row cache (EXO_ROW_CACHE_URL), Redis broker (dbs 9/10: this benchmark's own), outputs in
S3 (`moto_server` in its own process on loopback), the loopback OpenAI-compatible server (its own
process) at 50 ms per request, and `dagster-celery` workers each with their own DAGSTER_HOME and
EXO_DATA_DIR, concurrency 1. Worker A serves queues `one` and `two`, worker B only `two`: the same
cluster sent to `one` runs on one worker, sent to `two` on both. Runs alternate A B B A ...; the row
cache is cleared before each run, so every run asks for every row.

  cluster: 20,000 rows (sql) -> llm-complete (concurrency 64, `fan-out: {chunk-rows: 2500}`: 8 chunks)
  figures: the whole run (RUN_START to RUN_SUCCESS), and the chunked step's span (first chunk
           STEP_START to last chunk STEP_SUCCESS) as rows/s; medians, spread, paired ratios two/one.
  target:  two workers >= 1.8x one worker.

    .venv/bin/python -m benchmarks.bench_scaleout                       # 20,000 rows, 3 pairs
    .venv/bin/python -m benchmarks.bench_scaleout --rows 2000 --chunk-rows 250 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import dagster as dg
import yaml

from .bench_celery import stop
from .bench_llm import Server
from .harness import print_header

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BROKER, BACKEND = "redis://127.0.0.1:6379/9", "redis://127.0.0.1:6379/10"
CELERY = yaml.safe_load((ROOT / "deploy" / "celery" / "celery-no-shared-disk.yaml").read_text())["execution"]["config"][
    "config_source"
]
PG = "postgresql://postgres@127.0.0.1:5432/{db}"
DEFS = """
import os
from exo_dagster import compile_clusters, load_cluster_file
defs = compile_clusters([load_cluster_file(f) for f in os.environ["EXO_TEST_CLUSTERS"].split(os.pathsep) if f])
"""


def cluster(name: str, queue: str, rows: int, chunk_rows: int, url: str) -> str:
    return f"""\
version: 0.0.1b
cluster:
  identifier: bench/scale-{name}
  executor: celery
  queues: {{gpu: {queue}, cpu: {queue}}}
  satellites:
    - name: Prompts
      uses: satellite/exospherehost/sql
      identifier: prompts
      config: {{query: "select 'row ' || i as text from range({rows}) t(i)"}}
    - name: Complete
      uses: satellite/exospherehost/llm-complete
      identifier: answers
      fan-out: {{chunk-rows: {chunk_rows}}}
      config: {{model: gpt-4o-mini, base-url: "{url}", concurrency: 64}}
      input: {{prompt: "$${{{{ satellites.prompts.output.text }}}}"}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg(db: str, sql: str, autocommit: bool = True) -> None:
    import psycopg2

    con = psycopg2.connect(PG.format(db=db), connect_timeout=5)
    con.autocommit = autocommit
    with con.cursor() as cur:
        cur.execute(sql)
    con.close()


def records(instance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [r for r in instance.all_logs(run_id) if r.dagster_event and r.dagster_event.event_type == kind]


def figures(instance, run_id: str) -> tuple[float, float, set[str]]:
    """(run seconds, chunk span seconds, the workers that ran chunks)."""
    start = records(instance, run_id, dg.DagsterEventType.RUN_START)[0].timestamp
    end = records(instance, run_id, dg.DagsterEventType.RUN_SUCCESS)[0].timestamp
    chunk_starts = [
        r.timestamp for r in records(instance, run_id, dg.DagsterEventType.STEP_START) if "__chunk[" in r.step_key
    ]
    chunk_ends = [
        r.timestamp for r in records(instance, run_id, dg.DagsterEventType.STEP_SUCCESS) if "__chunk[" in r.step_key
    ]
    workers = set()
    for r in records(instance, run_id, dg.DagsterEventType.ENGINE_EVENT):
        meta = r.dagster_event.event_specific_data.metadata
        if "Celery worker" in meta and "__chunk[" in (r.step_key or ""):
            workers.add(meta["Celery worker"].value.split("@")[0])
    return end - start, max(chunk_ends) - min(chunk_starts), workers


def overheads(instance, run_id: str) -> str:
    """Median per chunk: submitted -> picked up by a worker -> STEP_START -> STEP_SUCCESS (s)."""
    marks: dict[str, dict[str, float]] = {}
    for r in instance.all_logs(run_id):
        if not r.dagster_event or "__chunk[" not in (r.step_key or ""):
            continue
        mark = marks.setdefault(r.step_key, {})
        kind = r.dagster_event.event_type
        if kind == dg.DagsterEventType.ENGINE_EVENT and r.user_message.startswith("Submitting celery task"):
            mark["submitted"] = r.timestamp
        elif (
            kind == dg.DagsterEventType.ENGINE_EVENT and "Celery worker" in r.dagster_event.event_specific_data.metadata
        ):
            mark.setdefault("picked", r.timestamp)
        elif kind == dg.DagsterEventType.STEP_START:
            mark["start"] = r.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            mark["end"] = r.timestamp
    full = [m for m in marks.values() if len(m) == 4]
    if not full:
        return f"per chunk: incomplete marks {sorted({k for m in marks.values() for k in m})}"
    med = lambda a, b: statistics.median(m[b] - m[a] for m in full)  # noqa: E731
    return (
        f"per chunk (median): queue {med('submitted', 'picked'):.2f} s, worker set-up {med('picked', 'start'):.2f} s, "
        f"step {med('start', 'end'):.2f} s"
    )


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chunk-rows", type=int, default=2_500)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (one worker, two workers)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    print_header(
        f"scale-out, no shared disk: {args.rows:,} llm-complete rows, chunks of {args.chunk_rows:,}, 50 ms/request"
    )
    token = uuid.uuid4().hex[:8]
    queues = {"one": f"exo-bench-one-{token}", "two": f"exo-bench-two-{token}"}
    db = f"exo_bench_scale_{token}"
    pg("postgres", f'create database "{db}"')
    tmp = Path(tempfile.mkdtemp(prefix="exo-bench-scaleout-"))
    moto = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port := free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[subprocess.Popen] = []
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "EXO_PG_HOST": "127.0.0.1",
            "EXO_PG_PORT": "5432",
            "EXO_PG_DB": db,
            "EXO_PG_USER": "postgres",
            "EXO_PG_PASSWORD": "",
            "EXO_OUTPUTS": f"s3://bench-{token}/outputs",
            "EXO_ROW_CACHE_URL": PG.format(db=db),
        }
        os.environ.update(env)
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=f"bench-{token}")
                break
            except Exception:
                time.sleep(0.1)
        with Server("--latency", "0.05") as server:
            files = []
            for name, queue in queues.items():
                path = tmp / f"{name}.yaml"
                path.write_text(cluster(name, queue, args.rows, args.chunk_rows, server.url))
                files.append(str(path))
            os.environ["EXO_TEST_CLUSTERS"] = os.pathsep.join(files)
            defs_file = tmp / f"bench_scaleout_defs_{token}.py"
            defs_file.write_text(DEFS)
            config = tmp / "celery.yaml"
            config.write_text(
                yaml.safe_dump(
                    {"execution": {"config": {"broker": BROKER, "backend": BACKEND, "config_source": CELERY}}}
                )
            )

            def host(name: str) -> Path:
                (tmp / name / "home").mkdir(parents=True)
                shutil.copyfile(ROOT / "deploy" / "celery" / "dagster.yaml", tmp / name / "home" / "dagster.yaml")
                return tmp / name

            here = host("orchestrator")
            os.environ.update({"DAGSTER_HOME": str(here / "home"), "EXO_DATA_DIR": str(here / "data")})
            with dg.DagsterInstance.get() as instance:
                instance.get_runs(limit=1)
            for name, serves in (("wa", f"{queues['one']},{queues['two']}"), ("wb", queues["two"])):
                root = host(name)
                wenv = {
                    **os.environ,
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PYTHONPATH": str(ROOT),
                    "DAGSTER_HOME": str(root / "home"),
                    "EXO_DATA_DIR": str(root / "data"),
                }
                workers.append(
                    subprocess.Popen(
                        [
                            str(BIN / "dagster-celery"),
                            "worker",
                            "start",
                            "-A",
                            "dagster_celery.app",
                            "-n",
                            f"{name}-{token}",
                            "-q",
                            serves,
                            "-y",
                            str(config),
                            "--",
                            "--concurrency=1",
                            "--without-gossip",
                            "--without-mingle",
                        ],
                        env=wenv,
                        cwd=root,
                        stdout=(tmp / f"{name}.log").open("w"),
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            deadline = time.monotonic() + 180
            while not all(" ready." in (tmp / f"{n}.log").read_text(errors="replace") for n in ("wa", "wb")):
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    print("workers did not start; see", tmp)
                    return 2
                time.sleep(0.5)

            from dagster._core.definitions.reconstruct import ReconstructableRepository

            repo = ReconstructableRepository.for_file(str(defs_file), "defs", working_directory=str(ROOT))
            run_config = {
                "loggers": {"console": {"config": {"log_level": "ERROR"}}},
                "execution": {"config": {"broker": BROKER, "backend": BACKEND, "config_source": CELERY}},
            }
            times: dict[str, list[tuple[float, float]]] = {"one": [], "two": []}
            order = [m for i in range(args.repeats) for m in (("one", "two") if i % 2 == 0 else ("two", "one"))]
            with dg.DagsterInstance.get() as instance:
                for mode in order:
                    pg(db, "delete from exo_row_cache") if times["one"] or times["two"] else None
                    server.reset()
                    load = open("/proc/loadavg").read().split()[:3]
                    job = f"bench__scale_{mode}"
                    result = dg.execute_job(
                        repo.get_reconstructable_job(job),
                        instance=instance,
                        run_config=run_config,
                        raise_on_error=False,
                    )
                    if not result.success:
                        print(f"{mode}: run failed; logs in {tmp}")
                        return 1
                    run_s, span_s, ran_on = figures(instance, result.run_id)
                    answered = server.stats()["answered"]
                    ok = len(answered) == args.rows and set(answered.values()) == {1}
                    times[mode].append((run_s, span_s))
                    print(
                        f"  {mode} worker(s): run {run_s:6.2f} s, chunks {span_s:6.2f} s = {args.rows / span_s:7.0f} "
                        "rows/s; "
                        f"chunks ran on {sorted(ran_on)}; every row asked once: {ok}; loadavg {' '.join(load)}"
                    )
                    print(f"      {overheads(instance, result.run_id)}")
            print()
            for label, i in (("whole run (s)", 0), ("chunked step (s)", 1)):
                one, two = [t[i] for t in times["one"]], [t[i] for t in times["two"]]
                ratios = [a / b for a, b in zip(one, two)]
                print(
                    f"  {label:17s} one: {spread(one)}   two: {spread(two)}   paired ratio one/two: "
                    f"{', '.join(f'{r:.2f}x' for r in ratios)} (median {statistics.median(ratios):.2f}x)"
                )
            span_ratio = statistics.median([a[1] / b[1] for a, b in zip(times["one"], times["two"])])
            print(
                f"\n  target: two workers >= 1.8x one worker on the chunked step: {span_ratio:.2f}x "
                f"[{'PASS' if span_ratio >= 1.8 else 'FAIL'}]; loadavg at the end "
                f"{open('/proc/loadavg').read().split()[:3]}"
            )
            return 0
    finally:
        for worker in workers:
            stop(worker)
        stop(moto)
        try:
            pg("postgres", f'drop database if exists "{db}" with (force)')
        except Exception as exc:
            print(f"could not drop {db}: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
