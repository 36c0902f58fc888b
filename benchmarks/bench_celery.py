"""Celery path vs the local executor: routing of the GPU-mix cluster over real workers, and per-step overhead.

Starts Redis-backed (127.0.0.1:6379, dbs 11/12: this benchmark's own) `dagster-celery` workers:
one on queue `exo-bench-gpu` (concurrency 2: the "two GPUs") and one on `exo-bench-cpu`
(concurrency 2), with a sqlite DAGSTER_HOME shared by the orchestrator and the workers.

  1. mix:   8 GPU steps + 4 CPU steps of 1 s (bench_gpu_executor's cluster) with `executor: celery`;
            checks that every GPU step ran on the GPU worker and every CPU step on the CPU worker
            (Dagster's "Executing steps ... in celery worker" events), reports the makespan.
  2. chain: 8 steps of 0 s in list order, once with `executor: celery` and once with the local
            executor; per-step overhead = median gap between consecutive STEP_SUCCESS events
            (the first step, which pays start-up, is left out).

    .venv/bin/python -m benchmarks.bench_celery             # 3 repeats of each
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg
import yaml

from exo_dagster import compile_clusters, parse_cluster

from .bench_gpu_executor import CPU_STEPS, GPU_STEPS, IDEAL, REGISTRY, cluster_yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BROKER, BACKEND = "redis://127.0.0.1:6379/11", "redis://127.0.0.1:6379/12"
QUEUES = {"gpu": "exo-bench-gpu", "cpu": "exo-bench-cpu"}
CHAIN = 8
MODULE = "benchmarks.bench_celery"


def chain_yaml(identifier: str, executor: str) -> str:
    lines = [
        "version: 0.0.1b",
        "cluster:",
        f"  identifier: {identifier}",
        f"  executor: {executor}",
        f"  queues: {{gpu: {QUEUES['gpu']}, cpu: {QUEUES['cpu']}}}",
        "  satellites:",
    ]
    for i in range(CHAIN):
        lines += [
            f"    - name: s{i}",
            "      uses: satellite/bench/cpu-sleep",
            f"      identifier: s{i}",
            "      config: {seconds: 0}",
        ]
    return "\n".join(lines) + "\n"


MIX = parse_cluster(
    cluster_yaml(identifier="bench/celery-mix", executor="celery").replace(
        "  executor: celery\n", f"  executor: celery\n  queues: {{gpu: {QUEUES['gpu']}, cpu: {QUEUES['cpu']}}}\n"
    ),
    __file__,
    registry=REGISTRY,
)
CHAIN_CELERY = parse_cluster(chain_yaml("bench/chain-celery", "celery"), __file__, registry=REGISTRY)
CHAIN_LOCAL = parse_cluster(chain_yaml("bench/chain-local", "local"), __file__, registry=REGISTRY)
defs = compile_clusters([MIX, CHAIN_CELERY, CHAIN_LOCAL])


def recon_job(name: str):
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    return ReconstructableRepository.for_module(MODULE, "defs", working_directory=str(ROOT)).get_reconstructable_job(
        name
    )


def redis(db: int, *command: str) -> bytes:
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as sock:
        for args in (("SELECT", str(db)), command):
            parts = [a.encode() for a in args]
            sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            reply = sock.recv(256)
    return reply


def start_worker(name: str, queue: str, config: Path, log: Path, concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            str(BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-n",
            name,
            "-q",
            queue,
            "-y",
            str(config),
            "--",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this benchmark started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def run(instance, job: str, celery: bool) -> dg.ExecuteJobResult:
    config = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    if celery:
        config["execution"] = {"config": {"broker": BROKER, "backend": BACKEND}}
    result = dg.execute_job(recon_job(job), instance=instance, run_config=config, raise_on_error=False)
    assert result.success, f"{job} failed"
    return result


def records(instance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [r for r in instance.all_logs(run_id) if r.dagster_event and r.dagster_event.event_type == kind]


def run_time(instance, run_id: str) -> float:
    start = records(instance, run_id, dg.DagsterEventType.RUN_START)[0].timestamp
    end = records(instance, run_id, dg.DagsterEventType.RUN_SUCCESS)[0].timestamp
    return end - start


def per_step_gaps(instance, run_id: str) -> list[float]:
    done = sorted(r.timestamp for r in records(instance, run_id, dg.DagsterEventType.STEP_SUCCESS))
    return [b - a for a, b in zip(done, done[1:])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # dagster-celery re-registers its task per run (DuplicateTaskNameWarning)
    for db in (11, 12):
        try:
            redis(db, "PING")
        except OSError as exc:
            print(f"needs Redis on 127.0.0.1:6379: {exc}")
            return 2
    for queue in QUEUES.values():
        redis(11, "DEL", queue)  # nothing stale from an interrupted earlier run
    tmp = tempfile.TemporaryDirectory(prefix="exo-bench-celery-")
    home = Path(tmp.name)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["EXO_DATA_DIR"] = str(home / "data")
    os.environ.setdefault("EXO_GPUS", "0,1")
    config = home / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": {"broker": BROKER, "backend": BACKEND}}}))
    load = os.getloadavg()[0]
    print(
        f"bench_celery: Redis broker, 2 workers (gpu/cpu queues, concurrency 2 each), {os.cpu_count()} CPU cores "
        f"(load avg {load:.1f} at start), dagster {dg.__version__}"
    )
    workers = []
    status = 0
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)  # create the storages before the workers race to
        try:
            for kind in ("gpu", "cpu"):
                workers.append(start_worker(f"bench-{kind}", QUEUES[kind], config, home / f"{kind}.log", concurrency=2))
            for kind, proc in zip(("gpu", "cpu"), workers):
                deadline = time.monotonic() + 180
                while " ready." not in (home / f"{kind}.log").read_text(errors="replace"):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        print((home / f"{kind}.log").read_text(errors="replace")[-3000:])
                        return 2
                    time.sleep(0.5)

            # 1. the GPU-mix cluster over Celery: routing and makespan
            mix_times, misplaced = [], []
            for _ in range(args.repeats):
                result = run(instance, MIX.job_name, celery=True)
                mix_times.append(run_time(instance, result.run_id))
                for r in records(instance, result.run_id, dg.DagsterEventType.ENGINE_EVENT):
                    meta = r.dagster_event.event_specific_data.metadata
                    if "Celery worker" in meta:
                        kind = r.step_key.split("__", 1)[0][:3]
                        if not meta["Celery worker"].value.startswith(f"bench-{kind}@"):
                            misplaced.append((r.step_key, meta["Celery worker"].value))
            print(
                f"\n  mix ({GPU_STEPS} GPU + {CPU_STEPS} CPU steps of 1 s) over Celery: run time median "
                f"{statistics.median(mix_times):.2f} s ({', '.join(f'{t:.2f}' for t in mix_times)}); ideal "
                f"{IDEAL:.1f} s; "
                f"steps on the wrong worker: {len(misplaced)} -> "
                f"{'PASS' if not misplaced else 'FAIL ' + str(misplaced[:3])}"
            )
            status |= bool(misplaced)

            # 2. per-step overhead: a chain of 0-second steps, Celery vs local
            gaps = {"celery": [], "local": []}
            totals = {"celery": [], "local": []}
            for _ in range(args.repeats):
                for name, cluster, celery in (("celery", CHAIN_CELERY, True), ("local", CHAIN_LOCAL, False)):
                    result = run(instance, cluster.job_name, celery=celery)
                    gaps[name] += per_step_gaps(instance, result.run_id)
                    totals[name].append(run_time(instance, result.run_id))
            celery_gap, local_gap = statistics.median(gaps["celery"]), statistics.median(gaps["local"])
            print(
                f"\n  chain of {CHAIN} steps of 0 s, {args.repeats} runs each (per-step = median gap between "
                "consecutive STEP_SUCCESS):"
            )
            print(
                f"    local executor : per step {local_gap:.3f} s (p90 "
                f"{statistics.quantiles(gaps['local'], n=10)[-1]:.3f}), "
                f"run median {statistics.median(totals['local']):.2f} s"
            )
            print(
                f"    celery executor: per step {celery_gap:.3f} s (p90 "
                f"{statistics.quantiles(gaps['celery'], n=10)[-1]:.3f}), "
                f"run median {statistics.median(totals['celery']):.2f} s"
            )
            print(
                f"    Celery path costs {celery_gap - local_gap:+.3f} s per step vs local "
                f"({celery_gap / local_gap:.2f}x)"
            )
        finally:
            for proc in workers:
                stop(proc)
    return status


if __name__ == "__main__":
    sys.exit(main())
