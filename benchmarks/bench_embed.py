"""embed-text benchmark: throughput through a compiled cluster vs sentence-transformers called directly.

Both sides embed the same rows with the same model (the packaged all-MiniLM-L6-v2), device and batch
size, in the same process, alternately (A B, B A, ...), and both load the model each round:

  direct    SentenceTransformer(path, device) + model.encode(texts, batch_size, normalize_embeddings=True)
  cluster   a compiled cluster (read-table over a Parquet file -> embed-text) executed in-process;
            timed as the embed step's duration in Dagster's event log (STEP_START -> STEP_SUCCESS:
            reading its input, loading the model, encoding, writing the Parquet output). The
            whole-job wall time (two steps, run start/stop) is shown too.

Target: cluster throughput >= 0.9x direct.

    .venv/bin/python -m benchmarks.bench_embed                  # 4,000 rows, 3 rounds
    .venv/bin/python -m benchmarks.bench_embed --rows 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from exo_dagster import compile_cluster, parse_cluster
from satellites import embed_text as embed_module

from .harness import print_header

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/embed
  satellites:
    - name: Read texts
      uses: satellite/exospherehost/read-table
      identifier: texts
      config: {{format: parquet}}
      input: {{paths: ["{path}"]}}
    - name: Embed
      uses: satellite/exospherehost/embed-text
      identifier: embeddings
      config: {{column: text, batch-size: {batch}}}
"""

SUBJECTS = [
    "the mobile app",
    "my invoice",
    "the export",
    "single sign-on",
    "the dashboard",
    "our webhook",
    "the search bar",
    "password reset",
    "the API",
    "calendar sync",
    "the billing page",
    "notifications",
]
PROBLEMS = [
    "crashes on start",
    "shows the wrong total",
    "times out",
    "is very slow",
    "returns an error 500",
    "never arrives",
    "logs me out",
    "is missing data",
    "stopped working yesterday",
    "charges twice",
]
EXTRA = [
    "please help",
    "this blocks our team",
    "we are on the enterprise plan",
    "since the last update",
    "on Android and iOS",
    "for all users in the EU region",
    "after I changed my password",
    "every morning",
]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(SUBJECTS), rng.choice(PROBLEMS)] + rng.sample(EXTRA, rng.randint(0, 4))
        out.append(f"Ticket {i}: " + ", ".join(words) + ".")
    return out


def direct(rows: list[str], device: str, batch: int) -> tuple[float, float, float]:
    """(load + encode seconds, encode seconds, process CPU seconds)."""
    from sentence_transformers import SentenceTransformer

    cpu = time.process_time()
    started = time.perf_counter()
    model = SentenceTransformer(embed_module.model_path("all-MiniLM-L6-v2"), device=device, local_files_only=True)
    loaded = time.perf_counter()
    vectors = model.encode(
        rows, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    done = time.perf_counter()
    assert vectors.shape == (len(rows), 384)
    return done - started, done - loaded, time.process_time() - cpu


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def cluster_run(job: dg.JobDefinition, n: int) -> tuple[float, float, float, float]:
    """(embed step seconds from the event log, whole-job wall seconds, encode seconds inside the step,
    process CPU seconds of the whole job)."""
    embed_module._MODELS.clear()  # load the model every round, as the direct side does
    instance = dg.DagsterInstance.ephemeral()
    cpu = time.process_time()
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, run_config=QUIET)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    assert result.success
    times = {}
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if (
            event
            and event.step_key
            and event.step_key.startswith("embeddings__")
            and event.event_type_value in ("STEP_START", "STEP_SUCCESS")
        ):
            times[event.event_type_value] = record.timestamp
    meta = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.path[-1] == "embeddings"
    )
    assert meta["exo/rows"].value == n
    return times["STEP_SUCCESS"] - times["STEP_START"], wall, meta["exo/embed/seconds"].value, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print_header(f"embed-text: compiled cluster vs sentence-transformers directly, {args.rows:,} rows")
    device = embed_module.resolve_device("auto")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    print(f"   device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch}")
    rows = texts(args.rows)
    with tempfile.TemporaryDirectory(prefix="exo-bench-embed-") as tmp:
        os.environ["EXO_DATA_DIR"] = str(Path(tmp) / "exo")
        source = Path(tmp) / "texts.parquet"
        pl.DataFrame({"id": list(range(args.rows)), "text": rows}).write_parquet(source)
        cluster = parse_cluster(CLUSTER.format(path=source, batch=args.batch), str(Path(tmp) / "embed.yaml"))
        job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
        direct(rows[:64], device, args.batch)  # warm-up: imports, first-call kernels
        cluster_run(job, args.rows)
        d_times, c_times, walls, d_enc, c_enc, d_cpu, c_cpu = [], [], [], [], [], [], []
        for r in range(args.repeats):
            for side in ("direct", "cluster") if r % 2 == 0 else ("cluster", "direct"):
                gc.collect()  # garbage of the previous round is not billed to this one
                if side == "direct":
                    total, encode, cpu = direct(rows, device, args.batch)
                    d_times.append(total)
                    d_enc.append(encode)
                    d_cpu.append(cpu)
                else:
                    step, wall, encode, cpu = cluster_run(job, args.rows)
                    c_times.append(step)
                    walls.append(wall)
                    c_enc.append(encode)
                    c_cpu.append(cpu)
            print(
                f"   round {r + 1}: direct {args.rows / d_times[-1]:,.0f} rows/s (encode alone {d_enc[-1]:.2f} s), "
                f"cluster step {args.rows / c_times[-1]:,.0f} rows/s (encode alone {c_enc[-1]:.2f} s; "
                f"whole job {args.rows / walls[-1]:,.0f} rows/s); CPU s: direct {d_cpu[-1]:.1f}, whole job "
                f"{c_cpu[-1]:.1f}"
            )
    d, c, w = statistics.median(d_times), statistics.median(c_times), statistics.median(walls)
    ratio = d / c
    paired = statistics.median(dt / ct for dt, ct in zip(d_times, c_times))
    overhead = statistics.median(ct - ce for ct, ce in zip(c_times, c_enc)) - statistics.median(
        dt - de for dt, de in zip(d_times, d_enc)
    )
    print(
        f"   median: direct {args.rows / d:,.0f} rows/s ({d:.2f} s), cluster step {args.rows / c:,.0f} rows/s "
        f"({c:.2f} s), "
        f"whole job {args.rows / w:,.0f} rows/s ({w:.2f} s)"
    )
    print(
        f"   step time outside model.encode minus direct's (model load): {overhead:+.2f} s (reading, Array column, "
        "Parquet)"
    )
    cpu_ratio = statistics.median(d_cpu) / statistics.median(c_cpu)
    print(
        f"   cluster / direct throughput, wall: step {ratio:.2f}x (median of per-round pairs {paired:.2f}x), "
        f"whole job {d / w:.2f}x  [{'PASS' if ratio >= 0.9 else 'FAIL'}: >= 0.9x]"
    )
    print(
        f"   cluster / direct throughput, process CPU (whole job, both steps + Dagster): {cpu_ratio:.2f}x  "
        f"[{'PASS' if cpu_ratio >= 0.9 else 'FAIL'}: >= 0.9x; CPU time is what other tenants of a busy machine "
        "cannot inflate]"
    )
    sys.exit(0 if ratio >= 0.9 else 1)


if __name__ == "__main__":
    main()
