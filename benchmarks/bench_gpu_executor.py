"""GPU-aware local executor: 8 GPU steps of 1 s + 4 CPU steps of 1 s on 2 (simulated) GPUs.

Target (issue 5): makespan <= 1.15 x the ideal 4 s (8 GPU-seconds over 2 devices, the CPU steps
running alongside), and no two running steps ever shared a device.

    EXO_GPUS=0,1 .venv/bin/python -m benchmarks.bench_gpu_executor             # 5 runs
    EXO_GPUS=0,1 .venv/bin/python -m benchmarks.bench_gpu_executor --runs 3 --stock

What is measured, per run, from the run's own records:
  GPU makespan     first GPU lease granted -> last GPU lease given back (the executor's engine events);
                   cross-checked with the steps' own compute start/end. This is the figure the target is on.
  run              RUN_START -> RUN_SUCCESS: adds the executor's one-off start (forkserver importing
                   Dagster + the job + the instance's storages) and the last step's output bookkeeping.
Checked, per run: each GPU step computed with exactly the device the executor leased it (its own
CUDA_VISIBLE_DEVICES), no two GPU steps' compute overlapped on a device, CPU steps saw no GPU.
`--stock` adds Dagster's own multiprocess executor on the same assets (no device isolation) for scale.
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
from exo_dagster.catalog.registry import Registry
from exo_dagster.execution.lease_audit import overlapping, run_leases

GPU_STEPS, CPU_STEPS, STEP_SECONDS, DEVICES = 8, 4, 1.0, ("0", "1")
IDEAL = GPU_STEPS * STEP_SECONDS / len(DEVICES)
TARGET_RATIO = 1.15
MODULE = "benchmarks.bench_gpu_executor"
REGISTRY = Registry()


class SleepConfig(SatelliteConfig):
    seconds: float = STEP_SECONDS


def _work(ctx: StepContext, config: SleepConfig) -> pl.DataFrame:
    """Holds its device(s) for `seconds` and reports what it was given."""
    start = time.time()
    time.sleep(config.seconds)
    return pl.DataFrame(
        {
            "step": [ctx.step],
            "devices": [os.environ.get("CUDA_VISIBLE_DEVICES")],
            "pid": [os.getpid()],
            "start": [start],
            "end": [time.time()],
        }
    )


satellite("satellite/bench/gpu-sleep", config=SleepConfig, resources={"gpu": 1}, registry=REGISTRY)(_work)
satellite("satellite/bench/cpu-sleep", config=SleepConfig, registry=REGISTRY)(_work)


def cluster_yaml(
    gpu_steps: int = GPU_STEPS,
    cpu_steps: int = CPU_STEPS,
    seconds: float = STEP_SECONDS,
    identifier: str = "bench/gpu-mix",
    executor: str | None = None,
) -> str:
    lines = ["version: 0.0.1b", "cluster:", f"  identifier: {identifier}", "  execution: dataflow"]
    if executor:
        lines.append(f"  executor: {executor}")
    lines.append("  satellites:")
    for kind, count in (("gpu", gpu_steps), ("cpu", cpu_steps)):
        for i in range(count):
            lines += [
                f"    - name: {kind} {i}",
                f"      uses: satellite/bench/{kind}-sleep",
                f"      identifier: {kind}{i}",
                f"      config: {{seconds: {seconds}}}",
            ]
    return "\n".join(lines) + "\n"


CLUSTER = parse_cluster(cluster_yaml(), __file__, registry=REGISTRY)
STOCK_JOB = f"{CLUSTER.job_name}__dagster_multiprocess"
_compiled = compile_clusters([CLUSTER])
defs = dg.Definitions.merge(
    _compiled,
    dg.Definitions(
        jobs=[
            dg.define_asset_job(
                STOCK_JOB, selection=dg.AssetSelection.groups(CLUSTER.job_name), executor_def=dg.multiprocess_executor
            )
        ]
    ),
)


def recon_job(name: str = CLUSTER.job_name):
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    root = str(Path(__file__).resolve().parents[1])
    return ReconstructableRepository.for_module(MODULE, "defs", working_directory=root).get_reconstructable_job(name)


def step_rows(home: Path) -> pl.DataFrame:
    files = sorted((home / "exo" / "outputs").rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("start")


def run_times(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    stamps = {}
    for r in instance.all_logs(run_id):
        if r.dagster_event and r.dagster_event.event_type in (
            dg.DagsterEventType.RUN_START,
            dg.DagsterEventType.RUN_SUCCESS,
        ):
            stamps[r.dagster_event.event_type] = r.timestamp
    return stamps[dg.DagsterEventType.RUN_START], stamps[dg.DagsterEventType.RUN_SUCCESS]


def one_run(home: Path, job: str = CLUSTER.job_name, run_config: dict | None = None) -> dict:
    """One run in `home` (the same DAGSTER_HOME every time: forkserver children keep the env they started with)."""
    for old in (home / "exo" / "outputs").rglob("*.parquet"):
        old.unlink()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            recon_job(job),
            instance=instance,
            run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        assert result.success, "benchmark run failed"
        start, end = run_times(instance, result.run_id)
        given = run_leases(instance, result.run_id) if job == CLUSTER.job_name else []
    rows = step_rows(home)
    gpu = rows.filter(pl.col("step").str.starts_with("gpu"))
    cpu = rows.filter(pl.col("step").str.starts_with("cpu"))
    out = {"run": end - start, "startup": rows["start"].min() - start, "tail": end - rows["end"].max(), "rows": rows}
    if given:
        by_step = {g["step"]: g for g in given}
        out.update(
            gpu_makespan=max(g["released"] for g in given) - min(g["acquired"] for g in given),
            gpu_compute_span=gpu["end"].max() - gpu["start"].min(),
            shared=overlapping([(g["step"], g["devices"], g["acquired"], g["released"]) for g in given])
            + overlapping([(r["step"], r["devices"], r["start"], r["end"]) for r in gpu.iter_rows(named=True)]),
            wrong_device=[
                r["step"]
                for r in gpu.iter_rows(named=True)
                if r["step"] not in by_step
                or r["devices"] != by_step[r["step"]]["devices"]
                or not by_step[r["step"]]["acquired"] <= r["start"] <= r["end"] <= by_step[r["step"]]["released"]
            ],
            cpu_with_gpu=[r["step"] for r in cpu.iter_rows(named=True) if r["devices"] != ""]
            + [g["step"] for g in given if g["step"].startswith("cpu")],
            counts=(gpu.height, cpu.height),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stock", action="store_true", help="also time Dagster's multiprocess executor (1 run)")
    parser.add_argument("--gpu-lookahead", type=int, default=None, help="executor setting (default: the executor's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("EXO_GPUS", ",".join(DEVICES))
    if os.environ["EXO_GPUS"] != ",".join(DEVICES):
        print(f"this benchmark is defined for EXO_GPUS={','.join(DEVICES)}; got {os.environ['EXO_GPUS']!r}")
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"bench_gpu_executor: {GPU_STEPS} GPU steps + {CPU_STEPS} CPU steps of {STEP_SECONDS:g} s, "
        f"EXO_GPUS={os.environ['EXO_GPUS']}, {os.cpu_count()} CPU cores (load avg {load:.1f} at start), "
        f"dagster {dg.__version__}, python {sys.version.split()[0]}"
    )
    tmp = tempfile.TemporaryDirectory(prefix="exo-bench-gpu-")
    home = Path(tmp.name)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    results = []
    for i in range(args.runs):
        r = one_run(
            home,
            run_config={"execution": {"config": {"gpu_lookahead": args.gpu_lookahead}}} if args.gpu_lookahead else None,
        )
        results.append(r)
        print(
            f"  run {i + 1}: GPU makespan {r['gpu_makespan']:.2f} s ({r['gpu_makespan'] / IDEAL:.3f}x ideal; "
            f"steps' own compute span {r['gpu_compute_span']:.2f} s) | run {r['run']:.2f} s = start-up "
            f"{r['startup']:.2f} + ... + tail {r['tail']:.2f} | GPU/CPU steps {r['counts'][0]}/{r['counts'][1]}, "
            f"device shared {len(r['shared'])}, wrong device {len(r['wrong_device'])}, CPU step with GPU "
            f"{len(r['cpu_with_gpu'])}"
        )
    last = results[-1]["rows"]
    t0 = last["start"].min()
    print("\n  last run, per step (seconds from the first compute start; devices = the step's CUDA_VISIBLE_DEVICES):")
    for row in last.iter_rows(named=True):
        print(
            f"    {row['step']:>5}  devices={row['devices'] or '-':>2}  pid={row['pid']:>6}  "
            f"{row['start'] - t0:6.2f} -> {row['end'] - t0:6.2f}"
        )
    med = statistics.median(r["gpu_makespan"] for r in results)
    ok_time = med <= TARGET_RATIO * IDEAL
    ok_devices = all(
        not r["shared"] and not r["wrong_device"] and not r["cpu_with_gpu"] and r["counts"] == (GPU_STEPS, CPU_STEPS)
        for r in results
    )
    print(
        f"\n  median GPU makespan {med:.2f} s over {len(results)} runs (min "
        f"{min(r['gpu_makespan'] for r in results):.2f}, "
        f"max {max(r['gpu_makespan'] for r in results):.2f}); ideal {IDEAL:.1f} s, limit {TARGET_RATIO * IDEAL:.2f} s "
        f"-> {'PASS' if ok_time else 'FAIL'} ({med / IDEAL:.3f}x)"
    )
    print(
        f"  median run {statistics.median(r['run'] for r in results):.2f} s (start-up "
        f"{statistics.median(r['startup'] for r in results):.2f} s, tail "
        f"{statistics.median(r['tail'] for r in results):.2f} s)"
    )
    print(
        f"  no device shared, every GPU step on exactly its leased device, CPU steps without GPU: "
        f"{'PASS' if ok_devices else 'FAIL'}"
    )
    if args.stock:
        r = one_run(home, STOCK_JOB, {"execution": {"config": {"max_concurrent": GPU_STEPS + CPU_STEPS}}})
        print(
            f"\n  for scale, Dagster's multiprocess executor (spawn, all 12 steps at once, no device isolation): "
            f"run {r['run']:.2f} s, start-up {r['startup']:.2f} s, compute span "
            f"{r['rows']['end'].max() - r['rows']['start'].min():.2f} s"
        )
    return 0 if ok_time and ok_devices else 1


if __name__ == "__main__":
    sys.exit(main())
