"""GPU-aware local executor: 8 GPU steps of 1 s + 4 CPU steps of 1 s on 2 (simulated) GPUs.

Target (issue 5): makespan <= 1.15 x the ideal 4 s (8 GPU-seconds over 2 devices, the CPU steps
running alongside), and no two running steps ever shared a device.

Each step records what it saw (CUDA_VISIBLE_DEVICES, pid, start/end wall clock) in its output
table; the executor records what it gave (`exo/devices` on STEP_WORKER_STARTING). Both are checked.

    EXO_GPUS=0,1 .venv/bin/python -m benchmarks.bench_gpu_executor           # 3 runs (default)
    EXO_GPUS=0,1 .venv/bin/python -m benchmarks.bench_gpu_executor --runs 5 --start-method spawn

Makespan is measured two ways, from the run's own event log:
  steps: first step launched (STEP_WORKER_STARTING) -> last step done (STEP_SUCCESS); the target.
  run:   RUN_START -> RUN_SUCCESS (adds the one-off executor start: forkserver + job load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from exo_dagster import SatelliteConfig, StepContext, compile_clusters, parse_cluster, satellite
from exo_dagster.registry import Registry

GPU_STEPS, CPU_STEPS, STEP_SECONDS, DEVICES = 8, 4, 1.0, ("0", "1")
IDEAL = GPU_STEPS * STEP_SECONDS / len(DEVICES)
TARGET_RATIO = 1.15
REGISTRY = Registry()


class SleepConfig(SatelliteConfig):
    seconds: float = STEP_SECONDS


def _work(ctx: StepContext, config: SleepConfig) -> pl.DataFrame:
    """Holds its device(s) for `seconds` and reports what it was given."""
    start = time.time()
    time.sleep(config.seconds)
    return pl.DataFrame({"step": [ctx.step], "devices": [os.environ.get("CUDA_VISIBLE_DEVICES")],
                         "pid": [os.getpid()], "start": [start], "end": [time.time()]})


satellite("satellite/bench/gpu-sleep", config=SleepConfig, resources={"gpu": 1}, registry=REGISTRY)(_work)
satellite("satellite/bench/cpu-sleep", config=SleepConfig, registry=REGISTRY)(_work)


def cluster_yaml(gpu_steps: int = GPU_STEPS, cpu_steps: int = CPU_STEPS, seconds: float = STEP_SECONDS,
                 identifier: str = "bench/gpu-mix", executor: str | None = None) -> str:
    lines = ["version: 0.0.1b", "cluster:", f"  identifier: {identifier}", "  execution: dataflow"]
    if executor:
        lines.append(f"  executor: {executor}")
    lines.append("  satellites:")
    for kind, count in (("gpu", gpu_steps), ("cpu", cpu_steps)):
        for i in range(count):
            lines += [f"    - name: {kind} {i}", f"      uses: satellite/bench/{kind}-sleep",
                      f"      identifier: {kind}{i}", f"      config: {{seconds: {seconds}}}"]
    return "\n".join(lines) + "\n"


CLUSTER = parse_cluster(cluster_yaml(), __file__, registry=REGISTRY)
defs = compile_clusters([CLUSTER])


def recon_job() -> dg._core.definitions.reconstruct.ReconstructableJob:
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    root = str(Path(__file__).resolve().parents[1])
    return ReconstructableRepository.for_module(__name__ if __name__ != "__main__" else "benchmarks.bench_gpu_executor",
                                                "defs", working_directory=root).get_reconstructable_job(CLUSTER.job_name)


def outputs(home: Path) -> pl.DataFrame:
    folder = home / "exo" / "outputs"
    files = sorted(folder.rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("start")


def shared_devices(rows: pl.DataFrame) -> list[str]:
    """Pairs of steps that held the same device at the same time (must be empty)."""
    bad = []
    gpu = [r for r in rows.iter_rows(named=True) if r["devices"]]
    for i, a in enumerate(gpu):
        for b in gpu[i + 1:]:
            common = set(a["devices"].split(",")) & set(b["devices"].split(","))
            if common and a["start"] < b["end"] and b["start"] < a["end"]:
                bad.append(f"{a['step']} and {b['step']} both on {sorted(common)}")
    return bad


def event_times(instance: dg.DagsterInstance, run_id: str) -> dict:
    records = instance.all_logs(run_id)
    def times(kind: str) -> list[float]:
        value = dg.DagsterEventType[kind].value
        return [r.timestamp for r in records if r.dagster_event and r.dagster_event.event_type_value == value]
    given = {r.step_key: r.dagster_event.event_specific_data.metadata.get("exo/devices").value for r in records
             if r.dagster_event and r.dagster_event.event_type_value == dg.DagsterEventType.STEP_WORKER_STARTING.value}
    return {"run": max(times("RUN_SUCCESS")) - min(times("RUN_START")),
            "steps": max(times("STEP_SUCCESS")) - min(times("STEP_WORKER_STARTING")), "given": given}


def one_run(start_method: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="exo-bench-gpu-") as tmp:
        home = Path(tmp)
        os.environ["DAGSTER_HOME"] = str(home)
        with dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            result = dg.execute_job(recon_job(), instance=instance, run_config={
                "execution": {"config": {"start_method": {start_method: {}}}},
                "loggers": {"console": {"config": {"log_level": "ERROR"}}}})
            wall = time.perf_counter() - t0
            assert result.success, "benchmark run failed"
            times = event_times(instance, result.run_id)
            rows = outputs(home)
    gpu_rows = rows.filter(pl.col("devices") != "")
    seen = {r["step"]: r["devices"] for r in rows.iter_rows(named=True)}
    given = {k.rsplit("__", 1)[1]: v for k, v in times["given"].items()}
    mismatch = [s for s, d in seen.items() if (d or "none") != given.get(s)]
    return {"wall": wall, "run": times["run"], "steps": times["steps"], "shared": shared_devices(rows),
            "gpu_steps_on_gpu": gpu_rows.height, "cpu_steps_without_gpu": rows.filter(pl.col("devices") == "").height,
            "mismatch": mismatch, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--start-method", choices=("forkserver", "spawn"), default="forkserver")
    args = parser.parse_args(argv)
    os.environ.setdefault("EXO_GPUS", ",".join(DEVICES))
    if os.environ["EXO_GPUS"] != ",".join(DEVICES):
        print(f"this benchmark is defined for EXO_GPUS={','.join(DEVICES)}; got {os.environ['EXO_GPUS']!r}")
        return 2
    print(f"bench_gpu_executor: {GPU_STEPS} GPU steps + {CPU_STEPS} CPU steps of {STEP_SECONDS:g} s, "
          f"EXO_GPUS={os.environ['EXO_GPUS']}, start method {args.start_method}, {os.cpu_count()} CPU cores, "
          f"dagster {dg.__version__}, python {sys.version.split()[0]}")
    results = []
    for i in range(args.runs):
        r = one_run(args.start_method)
        results.append(r)
        print(f"  run {i + 1}: steps makespan {r['steps']:.2f} s ({r['steps'] / IDEAL:.3f}x ideal), "
              f"run {r['run']:.2f} s, execute_job wall {r['wall']:.2f} s, "
              f"GPU steps on a GPU {r['gpu_steps_on_gpu']}/{GPU_STEPS}, CPU steps without GPU "
              f"{r['cpu_steps_without_gpu']}/{CPU_STEPS}, device shared: {len(r['shared'])}, "
              f"seen != given: {len(r['mismatch'])}")
    last = results[-1]["rows"]
    t0 = last["start"].min()
    print("\n  last run, per step (seconds from first step start):")
    for row in last.iter_rows(named=True):
        print(f"    {row['step']:>5}  devices={row['devices'] or '-':>2}  pid={row['pid']:>6}  "
              f"{row['start'] - t0:6.2f} -> {row['end'] - t0:6.2f}")
    med = statistics.median(r["steps"] for r in results)
    ok_time = med <= TARGET_RATIO * IDEAL
    ok_devices = all(not r["shared"] and not r["mismatch"] and r["gpu_steps_on_gpu"] == GPU_STEPS
                     and r["cpu_steps_without_gpu"] == CPU_STEPS for r in results)
    print(f"\n  median steps makespan {med:.2f} s over {len(results)} runs; ideal {IDEAL:.1f} s; "
          f"limit {TARGET_RATIO * IDEAL:.2f} s -> {'PASS' if ok_time else 'FAIL'} ({med / IDEAL:.3f}x)")
    print(f"  median run time (RUN_START -> RUN_SUCCESS) {statistics.median(r['run'] for r in results):.2f} s")
    print(f"  devices never shared, each step saw exactly what it was given: {'PASS' if ok_devices else 'FAIL'}")
    return 0 if ok_time and ok_devices else 1


if __name__ == "__main__":
    sys.exit(main())
