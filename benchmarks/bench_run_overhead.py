"""Run-overhead benchmark: a compiled 100-step cluster vs the same graph hand-written in Dagster.

Variants, all executed in-process (`job.execute_in_process(instance=DagsterInstance.ephemeral())`,
a fresh ephemeral instance per run, in-process executor), run alternately (A B C, C B A, ...):

  dagster hand-written   baseline: 100 chained `@dg.asset`s; step 0 `pl.read_parquet`s a 10-row file,
                         each later step returns `upstream.with_columns(pl.col("value") + 1)`;
                         Dagster's FilesystemIOManager pickles each output to a temp dir.
  exo polars chain       the compiled equivalent: step 0 the built-in `read-table`, each later step a
                         benchmark satellite `satellite/bench/bump` doing the same polars work on
                         `ctx.previous`; exo's Parquet IO manager stores each output.   <- the target
  dagster hand-written,  with --sql: the same hand-written chain whose later steps run the sql chain's query in
  DuckDB                 DuckDB (`duckdb.sql("select * from upstream").pl()` over the upstream DataFrame): the
                         same work as the exo sql chain, written by hand.
  exo sql chain          with --sql: what a real cluster does, the built-in `sql` satellite
                         (`select * from <previous>`, DuckDB) at every later step.   <- a target too, against
                         the DuckDB hand-written chain (its ratio to the polars one is printed too: that part
                         is DuckDB's per-query cost against a Polars expression, not exo's)
  ... catalog stubbed    informational, with --what-if: the exo polars chain with exo's per-output
                         DuckDB catalog registration patched out at run time (no code change).

Target (issue 15): exo polars chain / dagster hand-written <= 1.05x (median over repeats), and with --sql the
exo sql chain / the DuckDB hand-written chain too.

    .venv/bin/python -m benchmarks.bench_run_overhead                   # 100 steps, 5 repeats
    .venv/bin/python -m benchmarks.bench_run_overhead --what-if --sql   # + the sql chain (a target) and the
                                                                        #   catalog what-if
    .venv/bin/python -m benchmarks.bench_run_overhead --timers          # + wall-clock breakdown of a step
    .venv/bin/python -m benchmarks.bench_run_overhead --profile         # + cProfile of one run per variant

A missed target adds the --timers breakdown on its own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable

import dagster as dg
import polars as pl

from .clusters import chain_yaml, step_id, write_small_parquet
from .harness import fmt_seconds, load, measure_interleaved, paired_ratio, print_header, table

TARGET_RATIO = 1.05
BASELINE = "dagster hand-written"
TARGET_VARIANT = "exo polars chain"
SQL_VARIANT = "exo sql chain"
SQL_BASELINE = "dagster hand-written, DuckDB"
BENCH_SATELLITE = "satellite/bench/bump"


def bench_registry():
    """The built-in catalog plus one benchmark satellite that does the baseline's polars work."""
    from exo_dagster import Registry, SatelliteConfig, StepContext, satellite
    from exo_dagster.catalog.registry import builtin_registry

    extra = Registry()

    class BumpConfig(SatelliteConfig):
        column: str = "value"

    @satellite(BENCH_SATELLITE, config=BumpConfig, registry=extra, outputs={"*": "the previous step's columns"})
    def bump(ctx: StepContext, config: BumpConfig) -> pl.DataFrame:
        """Adds 1 to one column of the previous step's output (benchmark only)."""
        return ctx.previous.collect().with_columns(pl.col(config.column) + 1)

    return builtin_registry().merged(extra)


def exo_job(steps: int, data_path: str, cluster_file: str, uses: str, name: str) -> dg.JobDefinition:
    from exo_dagster import compile_cluster, parse_cluster

    text = chain_yaml(steps, data_path, name=name, uses=uses)
    cluster = parse_cluster(text, cluster_file, registry=bench_registry())
    return compile_cluster(cluster).resolve_job_def(cluster.job_name)


def _bump_frame(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("value") + 1)


def _duckdb_select(upstream: pl.DataFrame) -> pl.DataFrame:
    """The sql chain's step written by hand: DuckDB's replacement scan reads the local `upstream` DataFrame."""
    import duckdb

    return duckdb.sql("select * from upstream").pl()


def hand_job(
    steps: int, data_path: str, base_dir: str, work: Callable | None = None, group: str | None = None
) -> dg.JobDefinition:
    """`work` replaces the per-step body (the timer breakdown wraps it); default `_bump_frame`."""
    group = group or f"hand_run_{steps}"
    assets = []
    body = work or _bump_frame

    @dg.asset(key=dg.AssetKey([group, step_id(0)]), group_name=group)
    def first(context):
        return pl.read_parquet(data_path)

    assets.append(first)
    for i in range(1, steps):

        @dg.asset(
            key=dg.AssetKey([group, step_id(i)]),
            ins={"upstream": dg.AssetIn(key=dg.AssetKey([group, step_id(i - 1)]))},
            group_name=group,
        )
        def step(context, upstream):
            return body(upstream)

        assets.append(step)
    job = dg.define_asset_job(name=group, selection=dg.AssetSelection.groups(group))
    defs = dg.Definitions(
        assets=assets, jobs=[job], resources={"io_manager": dg.FilesystemIOManager(base_dir=base_dir)}
    )
    return defs.resolve_job_def(group)


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # same for every variant


def runner(job: dg.JobDefinition) -> Callable[[], None]:
    def run() -> None:
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=QUIET)
        if not result.success:
            raise RuntimeError(f"{job.name} failed")

    return run


WHAT_IF_NO_CATALOG = "exo polars chain, catalog stubbed (what-if)"


def without_catalog(run: Callable[[], None]) -> Callable[[], None] | None:
    """`run` with exo's per-output DuckDB catalog registration replaced by a no-op (runtime patch only)."""
    try:
        from exo_dagster.storage import output_views as catalog
    except ImportError:
        return None
    if not hasattr(catalog, "register_view"):
        return None

    def patched() -> None:
        original = catalog.register_view
        catalog.register_view = lambda *args, **kwargs: True
        try:
            run()
        finally:
            catalog.register_view = original

    return patched


def components(folder: str, data_path: str, repeats: int) -> None:
    """Median cost of the pieces of one step, outside Dagster: what each storage/engine call costs."""
    import pickle

    import duckdb

    from .harness import measure

    work = os.path.join(folder, "components")
    os.makedirs(work, exist_ok=True)
    frame = pl.read_parquet(data_path)
    pq, pk = os.path.join(work, "t.parquet"), os.path.join(work, "t.pickle")
    frame.write_parquet(pq)

    def pickle_round_trip() -> None:  # what FilesystemIOManager does per step (dump + load)
        with open(pk, "wb") as fh:
            pickle.dump(frame, fh)
        with open(pk, "rb") as fh:
            pickle.load(fh)

    def parquet_write_atomic() -> None:  # write_parquet_atomic for a DataFrame: tmp file + rename
        tmp = pq + ".tmp"
        frame.write_parquet(tmp)
        os.replace(tmp, pq)

    def parquet_read() -> None:  # a satellite collecting its input (StoredTable.collect)
        pl.scan_parquet(pq).collect()

    def metadata_rescan() -> None:  # dump_to_path's row count + schema re-scan of the file just written
        scan = pl.scan_parquet(pq)
        int(scan.select(pl.len()).collect().item())
        scan.collect_schema()

    def metadata_from_frame() -> None:  # the same figures from the in-memory DataFrame
        _ = (frame.height, frame.schema)

    def duckdb_connect() -> None:  # what satellites/tables/sql.py (via duck.connect) opens per step
        duckdb.connect().close()

    def duckdb_cursor() -> None:  # a cursor on an already-open in-memory database
        shared.cursor().close()

    shared = duckdb.connect()
    cases: list[tuple[str, Callable[[], None]]] = [
        ("pickle dump+load (hand-written baseline IO)", pickle_round_trip),
        ("polars write_parquet + rename", parquet_write_atomic),
        ("polars scan_parquet().collect() (read input)", parquet_read),
        ("row count + schema re-scan of written file", metadata_rescan),
        ("row count + schema from the DataFrame", metadata_from_frame),
        ("duckdb.connect() in-memory + close", duckdb_connect),
        ("cursor() on a shared duckdb connection", duckdb_cursor),
    ]
    try:
        from exo_dagster.sdk import duck

        if hasattr(duck, "sandbox_cursor"):
            cases.append(
                (
                    "duck.sandboxed(): a new locked database (sql, writing SQL)",
                    lambda: duck.sandboxed(directories=[work]).close(),
                )
            )
            cases.append(
                (
                    "duck.sandbox_cursor(): the shared one (sql, SELECTs)",
                    lambda: duck.sandbox_cursor(directories=[work]).close(),
                )
            )
    except ImportError:
        pass
    try:
        from exo_dagster.storage import output_views as catalog

        if hasattr(catalog, "register_view"):
            db = os.path.join(work, "catalog.duckdb")
            source = "read_parquet('" + pq.replace("'", "''") + "')"
            cases.append(
                (
                    "exo catalog.register_view (1 view, own connection)",
                    lambda: catalog.register_view("bench", "v", source, path=db),
                )
            )
    except ImportError:
        pass
    results = [measure(name, fn, repeats=repeats, warmup=2) for name, fn in cases]
    shared.close()
    print()
    print(
        table(
            results,
            baseline=results[0],
            title=f"-- per-step pieces outside Dagster (10-row table, median of {repeats})",
        )
    )


class Timers:
    """Wall-clock accumulators patched around named functions; cheap enough not to skew a run."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - start
                self.calls[label] = self.calls.get(label, 0) + 1

        return timed

    def patch(self, owner, name: str, label: str) -> None:
        if owner is None or not hasattr(owner, name):
            return
        original = getattr(owner, name)
        setattr(owner, name, self.wrap(label, original))
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def _timed_make_compute(timers: Timers, make_compute):
    """`make_compute` whose computes are timed by `timers`."""
    return lambda *a, **k: timers.wrap(
        "step compute (make_compute: templates, config, satellite)", make_compute(*a, **k)
    )


def timer_breakdown(steps: int, data_path: str, cluster_file: str, hand_dir: str, repeats: int) -> None:
    """Per-step wall time of each piece, measured with wrappers instead of a profiler (native code counts fully)."""
    from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

    import exo_dagster.compile.compiler as compiler
    from exo_dagster.storage.io_manager import ParquetTableIOManager

    try:
        from exo_dagster.storage import output_views as catalog
    except ImportError:
        catalog = None
    print(f"\n-- where a step's time goes: wall-clock wrappers, {steps} steps, median over {repeats} runs, ms per step")
    rows: dict[str, dict[str, list[float]]] = {}

    def record(variant: str, timers: Timers, total: float) -> None:
        out = rows.setdefault(variant, {})
        known = 0.0
        for label, value in timers.totals.items():
            out.setdefault(label, []).append(value)
            known += value if not label.startswith("  ") else 0.0
        out.setdefault("Dagster per-step machinery (the rest)", []).append(total - known)
        out.setdefault("whole run", []).append(total)

    for _ in range(repeats):
        # hand-written
        timers = Timers()
        job = hand_job(steps, data_path, hand_dir, work=timers.wrap("asset body (with_columns)", _bump_frame))
        timers.patch(PickledObjectFilesystemIOManager, "dump_to_path", "IO write: pickle.dump")
        timers.patch(PickledObjectFilesystemIOManager, "load_from_path", "IO read: pickle.load")
        try:
            total = time_once_quiet(job)
        finally:
            timers.restore()
        record(BASELINE, timers, total)
        # exo
        timers = Timers()
        original_make_compute = compiler.make_compute
        compiler.make_compute = _timed_make_compute(timers, original_make_compute)
        try:
            job = exo_job(steps, data_path, cluster_file, BENCH_SATELLITE, "polars-chain")
        finally:
            compiler.make_compute = original_make_compute
        timers.patch(ParquetTableIOManager, "dump_to_path", "IO write: dump_to_path (parquet + metadata + catalog)")
        timers.patch(catalog, "register_view", "  of which catalog.register_view")
        timers.patch(ParquetTableIOManager, "load_from_path", "IO read: load_from_path")
        try:
            total = time_once_quiet(job)
        finally:
            timers.restore()
        record(TARGET_VARIANT, timers, total)

    import statistics

    order = [
        "asset body (with_columns)",
        "step compute (make_compute: templates, config, satellite)",
        "IO read: pickle.load",
        "IO read: load_from_path",
        "IO write: pickle.dump",
        "IO write: dump_to_path (parquet + metadata + catalog)",
        "  of which catalog.register_view",
        "Dagster per-step machinery (the rest)",
        "whole run",
    ]
    for variant, parts in rows.items():
        print(f"[{variant}]")
        for label in sorted(parts, key=lambda k: order.index(k) if k in order else len(order)):
            print(f"  {label:60s} {statistics.median(parts[label]) / steps * 1e3:7.2f} ms")


def time_once_quiet(job: dg.JobDefinition) -> float:
    run = runner(job)
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def check_equivalent(folder: str, steps: int, exo_name: str, hand_dir: str, hand_group: str) -> str:
    """The last outputs of the exo polars chain and the hand-written chain hold the same table."""
    import pickle

    exo_path = os.path.join(
        folder, "exo", "outputs", f"bench__{exo_name}".replace("-", "_"), f"{step_id(steps - 1)}.parquet"
    )
    hand_path = os.path.join(hand_dir, hand_group, step_id(steps - 1))
    exo_frame = pl.read_parquet(exo_path)
    with open(hand_path, "rb") as fh:
        hand_frame = pickle.load(fh)
    return "identical" if exo_frame.equals(hand_frame) else "DIFFERENT"


PROFILE_FUNCS = [
    # (label, file suffix, function name)
    ("dagster: whole run (execute_in_process)", "definitions/job_definition.py", "execute_in_process"),
    ("exo asset fn (_step -> compute)", "exo_dagster/compile/compiler.py", "_step"),
    ("  make_compute.compute (templates, config, ctx)", "exo_dagster/runtime/step_compute.py", "compute"),
    ("    satellite fn: bump", "benchmarks/bench_run_overhead.py", "bump"),
    ("    satellite fn: sql", "satellites/tables/sql.py", "sql"),
    ("    satellite fn: read_table", "satellites/tables/read_table.py", "read_table"),
    ("  exo IO: dump_to_path (write + metadata)", "exo_dagster/storage/io_manager.py", "dump_to_path"),
    ("    write_parquet_atomic", "exo_dagster/storage/io_manager.py", "write_parquet_atomic"),
    ("  exo IO: load_from_path", "exo_dagster/storage/io_manager.py", "load_from_path"),
    ("  UPathIOManager.handle_output", "storage/upath_io_manager.py", "handle_output"),
    ("  UPathIOManager.load_input", "storage/upath_io_manager.py", "load_input"),
    ("hand asset fn (step)", "benchmarks/bench_run_overhead.py", "step"),
    ("  hand FS IO: dump_to_path (pickle)", "storage/fs_io_manager.py", "dump_to_path"),
    ("  hand FS IO: load_from_path (unpickle)", "storage/fs_io_manager.py", "load_from_path"),
    ("polars: scan_parquet", "polars/io/parquet/functions.py", "scan_parquet"),
    ("polars: LazyFrame.collect", "polars/lazyframe/frame.py", "collect"),
    ("polars: collect_schema", "polars/lazyframe/frame.py", "collect_schema"),
    ("polars: sink_parquet", "polars/lazyframe/frame.py", "sink_parquet"),
    ("polars: DataFrame.write_parquet", "polars/dataframe/frame.py", "write_parquet"),
    ("dagster: add_output_metadata", "context/output.py", "add_output_metadata"),
    ("exo: catalog.register_view (DuckDB catalog file)", "exo_dagster/storage/output_views.py", "register_view"),
    ("exo: duck.connect (new DuckDB database per call)", "exo_dagster/sdk/duck.py", "connect"),
    ("dagster: event log writes (handle_new_event)", "instance/methods/event_methods.py", "handle_new_event"),
]


def breakdown(prof: cProfile.Profile, steps: int) -> list[tuple[str, float, int]]:
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    out = []
    for label, suffix, func in PROFILE_FUNCS:
        total, calls = 0.0, 0
        for (file, _line, name), (_cc, nc, _tt, ct, _callers) in stats.items():
            if name == func and file.replace(os.sep, "/").endswith(suffix):
                total, calls = total + ct, calls + nc
        if calls:
            out.append((label, total, calls))
    return out


def profile_runs(variants: dict[str, Callable[[], None]], steps: int, limit: int) -> None:
    print(
        "\n--- profile: one run of each variant under cProfile (cumulative seconds; profiler inflates "
        "Python-heavy code, so compare rows, not absolutes)"
    )
    for name, run in variants.items():
        prof = cProfile.Profile()
        prof.enable()
        run()
        prof.disable()
        print(f"\n[{name}]")
        print(f"  {'what':52s} {'total':>9s} {'calls':>6s} {'per step':>9s}")
        for label, total, calls in breakdown(prof, steps):
            print(f"  {label:52s} {total:8.3f}s {calls:6d} {total / steps * 1e3:7.2f}ms")
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(limit)
        body = buf.getvalue()
        print(f"  top {limit} by own time:")
        print(body[body.find("   ncalls") :].rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (after one warm-up each)")
    parser.add_argument("--sql", action="store_true", help="add the sql-chain variant (a target too)")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="add a variant with exo's DuckDB catalog registration stubbed out (runtime patch)",
    )
    parser.add_argument("--no-components", action="store_true", help="skip the per-step pieces micro-benchmark")
    parser.add_argument(
        "--timers",
        action="store_true",
        help="add a wall-clock breakdown of a step (baseline and target variant, wrapped functions)",
    )
    parser.add_argument("--profile", action="store_true", help="profile one run of each variant afterwards")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)

    print_header(f"bench_run_overhead: {args.steps}-step chain, compiled exo cluster vs hand-written Dagster")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="exo-bench-run-") as folder:
        os.environ["EXO_DATA_DIR"] = os.path.join(folder, "exo")  # exo's IO manager and catalog write under here
        for override in ("EXO_OUTPUTS", "EXO_CATALOG"):  # ... unless these point elsewhere
            os.environ.pop(override, None)
        data_path = write_small_parquet(folder)
        cluster_file = os.path.join(folder, "cluster.yaml")  # relative paths resolve against its folder
        hand_dir = os.path.join(folder, "dagster-fs")
        jobs = {
            BASELINE: hand_job(args.steps, data_path, hand_dir),
            TARGET_VARIANT: exo_job(args.steps, data_path, cluster_file, BENCH_SATELLITE, "polars-chain"),
        }
        if args.sql:
            jobs[SQL_BASELINE] = hand_job(
                args.steps, data_path, hand_dir, work=_duckdb_select, group=f"hand_sql_{args.steps}"
            )
            jobs[SQL_VARIANT] = exo_job(args.steps, data_path, cluster_file, "satellite/exospherehost/sql", "sql-chain")
        variants = {name: runner(job) for name, job in jobs.items()}
        if args.what_if:
            patched = without_catalog(runner(jobs[TARGET_VARIANT]))
            if patched is None:
                print("   (what-if skipped: exo_dagster.storage.output_views.register_view not found)")
            else:
                variants[WHAT_IF_NO_CATALOG] = patched
        results = measure_interleaved(variants, repeats=args.repeats, warmup=1)
        same = check_equivalent(folder, args.steps, "polars-chain", hand_dir, f"hand_run_{args.steps}")

        base = results[BASELINE]
        print()
        print(
            table(
                results.values(), baseline=base, title=f"-- {args.steps} steps, execute_in_process, ephemeral instance"
            )
        )
        for r in results.values():
            print(
                f"   {r.name}: {fmt_seconds(r.median / args.steps)} per step (median run / steps)"
                + (
                    f", paired ratio {paired_ratio(r, base):.2f}x (median of same-round ratios)"
                    if r is not base
                    else ""
                )
            )
        print(f"   last step's output, exo polars chain vs hand-written: {same}")
        ratio = results[TARGET_VARIANT].median / base.median
        paired = paired_ratio(results[TARGET_VARIANT], base)
        ok = ratio <= TARGET_RATIO
        print(
            f"\nTARGET {TARGET_VARIANT} / {BASELINE} <= {TARGET_RATIO:.2f}x: {ratio:.2f}x (ratio of medians; "
            f"paired {paired:.2f}x) -> {'PASS' if ok else 'FAIL'}"
        )
        if SQL_VARIANT in results:
            sql_base = results[SQL_BASELINE]
            sql_ratio = results[SQL_VARIANT].median / sql_base.median
            sql_ok = sql_ratio <= TARGET_RATIO
            print(
                f"TARGET {SQL_VARIANT} / {SQL_BASELINE} <= {TARGET_RATIO:.2f}x: {sql_ratio:.2f}x (ratio of medians; "
                f"paired {paired_ratio(results[SQL_VARIANT], sql_base):.2f}x) -> {'PASS' if sql_ok else 'FAIL'}"
            )
            print(
                f"       ({SQL_VARIANT} / {BASELINE}: {results[SQL_VARIANT].median / base.median:.2f}x, paired "
                f"{paired_ratio(results[SQL_VARIANT], base):.2f}x; {SQL_BASELINE} / {BASELINE}: "
                f"{sql_base.median / base.median:.2f}x: DuckDB's per-query cost against a Polars expression)"
            )
            ok = ok and sql_ok
        if WHAT_IF_NO_CATALOG in results:
            print(
                f"       ({WHAT_IF_NO_CATALOG}: {results[WHAT_IF_NO_CATALOG].median / base.median:.2f}x, informational)"
            )
        if not args.no_components:
            components(folder, data_path, repeats=20)
        if not ok and not args.timers:
            print("\ntarget missed: timing where a step's time goes (see below; --profile adds cProfile)")
            args.timers = True
        if args.timers:
            timer_breakdown(args.steps, data_path, cluster_file, hand_dir, repeats=3)
        if args.profile:
            profile_runs(variants, args.steps, args.profile_top)
    print(f"\n(total benchmark wall time {time.perf_counter() - started:.1f} s; {load()} at end)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
