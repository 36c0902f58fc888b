"""A million rows through per-row fan-out (issue 15): orchestration cost per row and the step's peak RSS.

Subject: a compiled cluster, `rows` (sql: 'row ' || i for i < N) then `upper`, a benchmark satellite
with `input: {text: "$${{ satellites.rows.output.text }}"}` that calls `ctx.map_rows` (as the
built-in per-row satellites do) with a cheap row function (`text.upper()`), concurrency 8, the row
cache ON (a fresh cache per round: every row is computed and committed). Timed: the `upper` step
alone, as a Dagster run of that one asset (load its input, the map, store its output), in its own
process, whose peak RSS (VmHWM, reset just before the step) is the step's.
Baselines, each in its own process over the same rows (read from the same Parquet file) with the
same calls, building and writing the same kind of output table:
  loop    a plain ThreadPoolExecutor(8).map(fn, rows): what one would write without the SDK
  serial  `for row in rows: fn(row)`: no threads at all (the floor, for reference)
Rounds alternate subject and loop (A B B A ...). Targets: subject <= 2x loop per row; peak RSS <= 1 GB.

    .venv/bin/python -m benchmarks.bench_million_rows                      # 1,000,000 rows, 4 rounds
    .venv/bin/python -m benchmarks.bench_million_rows --rows 50000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from .harness import print_header

REPO = Path(__file__).resolve().parents[1]
SATELLITE = "satellite/bench/upper-row"
CONCURRENCY = 8
RATIO_TARGET, RSS_TARGET = 2.0, 1024**3

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/million
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {{query: "select 'row ' || i as text from range({rows}) t(i)"}}
    - name: Upper
      uses: satellite/bench/upper-row
      identifier: upper
      concurrency: {concurrency}
      input: {{text: "$${{{{ satellites.rows.output.text }}}}"}}
"""


def row_fn(row: dict) -> dict:
    """The per-row work of both sides: one string operation."""
    return {"upper": row["text"].upper()}


def _registry():
    from exo_dagster import Registry, SatelliteConfig, StepContext, satellite
    from exo_dagster.catalog.registry import builtin_registry

    extra = Registry()

    class UpperConfig(SatelliteConfig):
        pass

    @satellite(
        SATELLITE,
        config=UpperConfig,
        registry=extra,
        inputs={"text": "per row"},
        outputs={"upper": "the text, upper-cased"},
    )
    def upper(ctx: StepContext, config: UpperConfig) -> pl.DataFrame:
        """Upper-cases `text` per row through ctx.map_rows (benchmark only)."""
        return ctx.map_rows(lambda row, key: row_fn(row))

    return builtin_registry().merged(extra)


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # Linux: the peak RSS restarts from the current RSS


def child_subject(rows: int, tmp: str) -> dict:
    """Materialise `rows` (untimed), then time a run of `upper` alone; the row cache is fresh."""
    import dagster as dg

    from exo_dagster import compile_cluster, parse_cluster

    path = Path(tmp) / "million.yaml"
    path.write_text(CLUSTER.format(rows=rows, concurrency=CONCURRENCY))
    cluster = parse_cluster(path.read_text(), str(path), registry=_registry())
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    key = lambda ident: dg.AssetKey([*cluster.spec.identifier.split("/"), ident])  # noqa: E731
    assert job.execute_in_process(instance=instance, run_config=quiet, asset_selection=[key("rows")]).success
    _reset_peak()
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, run_config=quiet, asset_selection=[key("upper")])
    seconds = time.perf_counter() - started
    assert result.success
    meta = _materialization_metadata(result)
    stats = instance.get_run_step_stats(result.run_id)
    step_seconds = sum((s.end_time - s.start_time) for s in stats if s.end_time and s.start_time)
    computed, per_second = int(meta["exo/rows_computed"]), float(meta["exo/rows_per_second"])
    assert computed == rows and int(meta["exo/rows_failed"]) == 0, meta
    out = pl.read_parquet(_stored(tmp, cluster.job_name, "upper"))
    assert out.height == rows and out["upper"][rows - 1] == f"ROW {rows - 1}", out.tail(2)
    return {
        "seconds": seconds,
        "step_seconds": step_seconds,
        "map_seconds": computed / per_second,
        "peak_rss": _peak_rss(),
    }


def _materialization_metadata(result) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.path[-1] == "upper":
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError("no materialization of `upper`")


def _stored(tmp: str, job_name: str, ident: str) -> Path:
    found = list((Path(tmp) / "exo").rglob(f"{ident}.parquet"))
    assert found, f"no stored output of {ident} under {tmp}"
    return found[0]


def child_baseline(rows: int, tmp: str, kind: str) -> dict:
    """The same calls over the same rows with no SDK: read the Parquet, loop, build + write the table."""
    source = Path(tmp) / "rows.parquet"
    if not source.exists():
        pl.DataFrame({"text": [f"row {i}" for i in range(rows)]}).write_parquet(source)
    _reset_peak()
    started = time.perf_counter()
    records = pl.read_parquet(source).to_dicts()
    if kind == "loop":
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            results = list(pool.map(row_fn, records))
    else:
        results = [row_fn(r) for r in records]
    out = pl.DataFrame(results)
    out.write_parquet(Path(tmp) / f"{kind}-out.parquet")
    seconds = time.perf_counter() - started
    assert out.height == rows
    return {"seconds": seconds, "peak_rss": _peak_rss()}


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def _spawn(kind: str, rows: int, tmp: str) -> dict:
    env = {
        **os.environ,
        "EXO_DATA_DIR": str(Path(tmp) / "exo"),
        "EXO_CACHE_DIR": str(Path(tmp) / "cache"),
        "DAGSTER_HOME": str(Path(tmp) / "home"),
    }
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_million_rows", "--child", kind, "--rows", str(rows), "--tmp", tmp],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(f"{kind} child failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-serial", action="store_true", help="skip the serial-loop reference")
    parser.add_argument("--child", choices=("subject", "loop", "serial"))
    parser.add_argument("--tmp")
    args = parser.parse_args()
    if args.child:
        result = (
            child_subject(args.rows, args.tmp)
            if args.child == "subject"
            else child_baseline(args.rows, args.tmp, args.child)
        )
        print(json.dumps(result))
        return

    print_header(f"a million rows: per-row fan-out of a cheap row function, {args.rows:,} rows, row cache on")
    n = args.rows
    times: dict[str, list[float]] = {"subject": [], "loop": [], "serial": []}
    extra: dict[str, list[float]] = {"step_seconds": [], "map_seconds": []}
    rss: dict[str, list[int]] = {k: [] for k in times}
    ratios: list[float] = []
    for r in range(args.rounds):
        order = ("subject", "loop") if r % 2 == 0 else ("loop", "subject")
        if not args.no_serial:
            order = (*order, "serial")
        line = []
        for kind in order:
            with tempfile.TemporaryDirectory(prefix="exo-bench-million-") as tmp:
                got = _spawn(kind, n, tmp)
            times[kind].append(got["seconds"])
            rss[kind].append(got["peak_rss"])
            if kind == "subject":
                extra["step_seconds"].append(got["step_seconds"])
                extra["map_seconds"].append(got["map_seconds"])
            line.append(
                f"{kind} {got['seconds']:.2f} s ({got['seconds'] / n * 1e6:.2f} µs/row, peak RSS "
                f"{got['peak_rss'] / 2**20:,.0f} MiB)"
            )
        ratios.append(times["subject"][-1] / times["loop"][-1])
        print(
            f"   round {r + 1} [{', '.join(order)}] (load {_load()}): "
            + "; ".join(line)
            + f"; subject/loop {ratios[-1]:.2f}"
        )

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"

    print(
        f"\n   subject (the `upper` step's Dagster run): {med(times['subject'])}; the step itself "
        f"{med(extra['step_seconds'])}; ctx.map_rows {med(extra['map_seconds'])}"
    )
    print(f"   loop (ThreadPoolExecutor({CONCURRENCY}).map): {med(times['loop'])}")
    if times["serial"]:
        print(f"   serial (for loop):              {med(times['serial'])}")
    per_row = {k: statistics.median(v) / n * 1e6 for k, v in times.items() if v}
    ratio = statistics.median(ratios)
    cost = per_row["subject"] - per_row["loop"]
    print(
        f"   per row: subject {per_row['subject']:.2f} µs, loop {per_row['loop']:.2f} µs"
        + (f", serial {per_row['serial']:.2f} µs" if "serial" in per_row else "")
        + f"; orchestration cost (subject - loop) {cost:+.2f} µs/row"
    )
    if "serial" in per_row:
        print(
            f"   subject - serial: {per_row['subject'] - per_row['serial']:+.2f} µs/row, "
            f"subject/serial {per_row['subject'] / per_row['serial']:.2f}x"
        )
    peak = max(rss["subject"])
    print(
        f"   subject/loop per round: {', '.join(f'{x:.2f}' for x in ratios)}; median {ratio:.2f} (target <= "
        f"{RATIO_TARGET})"
    )
    print(
        f"   peak RSS of the step process: max {peak / 2**20:,.0f} MiB over rounds (target <= 1,024 MiB); "
        f"loop {max(rss['loop']) / 2**20:,.0f} MiB"
    )
    ok = ratio <= RATIO_TARGET and peak <= RSS_TARGET
    print(f"\nsummary: {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
