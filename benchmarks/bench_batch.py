"""Batch data: a 10M-row read -> sql filter+aggregate -> write pipeline, three ways, in one run.

* `duckdb script`   - the same work as one hand-written DuckDB script (the floor)
* `exo cluster`     - a compiled cluster run with `dagster job execute` (read-table -> sql -> write-table)
* `dagster+pandas`  - the same graph hand-written in Dagster, default pickling IO manager, pandas
* `dagster+polars`  - the same graph hand-written in Dagster with Polars, for orientation

Every variant is a fresh process (whole-process wall time, imports included), timed at 10k and
10M rows; "cost per row" is (time at 10M - time at 10k) / (10M - 10k), which removes fixed
start-up costs. Peak RSS is the largest process of the variant's tree (getrusage of children).

    .venv/bin/python -m benchmarks.bench_batch [--rows 10000000] [--repeats 3] [--wide]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from .harness import print_header, run_measured

ROOT = Path(__file__).resolve().parents[1]
WIDE = False  # --wide: three more string columns the query never reads, as real fact tables have
BIN = Path(sys.executable).parent
QUERY = "select region, count(*) as n, sum(amount) as total from {src} where flag and amount > 10 group by region order by region"

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/rows-{rows}
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      identifier: source
      config: {{path: "{src}"}}
    - name: Filter and aggregate
      uses: satellite/exospherehost/sql
      identifier: totals
      config:
        query: "{query}"
    - name: Write
      uses: satellite/exospherehost/write-table
      identifier: written
      config: {{path: "{out}"}}
"""

DUCKDB_SCRIPT = """\
import duckdb, sys
src, out = sys.argv[1], sys.argv[2]
duckdb.sql("copy ({query}) to '" + out + "' (format parquet)")
"""

DAGSTER_PANDAS = """\
import sys
import dagster as dg
import pandas as pd

SRC, OUT = {src!r}, {out!r}

@dg.asset
def source() -> pd.DataFrame:
    return pd.read_parquet(SRC)

@dg.asset
def totals(source: pd.DataFrame) -> pd.DataFrame:
    kept = source[source["flag"] & (source["amount"] > 10)]
    return kept.groupby("region").agg(n=("amount", "size"), total=("amount", "sum")).reset_index().sort_values("region")

@dg.asset
def written(totals: pd.DataFrame) -> None:
    totals.to_parquet(OUT)

defs = dg.Definitions(assets=[source, totals, written], jobs=[dg.define_asset_job("pipeline")])
"""

DAGSTER_POLARS = """\
import dagster as dg
import polars as pl

SRC, OUT = {src!r}, {out!r}

@dg.asset
def source() -> pl.DataFrame:
    return pl.read_parquet(SRC)

@dg.asset
def totals(source: pl.DataFrame) -> pl.DataFrame:
    return (source.filter(pl.col("flag") & (pl.col("amount") > 10)).group_by("region")
            .agg(n=pl.len(), total=pl.col("amount").sum()).sort("region"))

@dg.asset
def written(totals: pl.DataFrame) -> None:
    totals.write_parquet(OUT)

defs = dg.Definitions(assets=[source, totals, written], jobs=[dg.define_asset_job("pipeline")])
"""


def make_source(path: Path, rows: int) -> None:
    import duckdb

    wide = ", 'customer-' || (i % 100000) as customer, md5(i::varchar) as note, 'sku-' || (i % 5000) as sku" if WIDE else ""
    duckdb.sql(f"""copy (select i as id, 'r' || (i % 8) as region, (i * 7919 % 10000) / 100.0 as amount,
                        (i % 3 = 0) as flag {wide} from range({rows}) t(i)) to '{path}' (format parquet)""")


def variants(work: Path, rows: int, src: Path) -> dict[str, tuple[list[str], dict, Path]]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "DAGSTER_"))}
    out = {}
    script = work / "duck.py"
    script.write_text(DUCKDB_SCRIPT.format(query=QUERY.format(src="read_parquet('\" + src + \"')")))
    out["duckdb script"] = ([sys.executable, str(script), str(src), str(work / "duck_out.parquet")], base_env, work)
    cluster = work / "cluster.yaml"
    cluster.write_text(CLUSTER.format(rows=rows, src=src, query=QUERY.format(src="source"), out=str(work / "exo_out.parquet")))
    env = {**base_env, "EXO_CLUSTERS": str(cluster), "DAGSTER_HOME": str(work / "home_exo"), "EXO_DATA_DIR": str(work / "exo")}
    out["exo cluster"] = ([str(BIN / "dagster"), "job", "execute", "-m", "definitions", "-j", f"bench__rows_{rows}"], env, ROOT)
    for name, template in (("dagster+pandas", DAGSTER_PANDAS), ("dagster+polars", DAGSTER_POLARS)):
        file = work / f"{name.replace('+', '_')}.py"
        file.write_text(template.format(src=str(src), out=str(work / f"{file.stem}_out.parquet")))
        env = {**base_env, "DAGSTER_HOME": str(work / f"home_{file.stem}")}
        out[name] = ([str(BIN / "dagster"), "job", "execute", "-f", str(file), "-j", "pipeline"], env, work)
    return out


def fresh_homes(work: Path) -> None:
    for home in work.glob("home_*"):
        shutil.rmtree(home)
    for name in ("home_exo", "home_dagster_pandas", "home_dagster_polars"):
        (work / name).mkdir()
    shutil.rmtree(work / "exo", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wide", action="store_true", help="add customer/note/sku string columns the query does not read")
    args = parser.parse_args()
    global WIDE
    WIDE = args.wide
    print_header("batch pipeline: read parquet -> filter+aggregate -> write")
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="exo-bench-") as tmp:
        work = Path(tmp)
        for rows in (args.small, args.rows):
            src = work / f"source_{rows}.parquet"
            make_source(src, rows)
            print(f"   source: {rows:,} rows, {src.stat().st_size / 2**20:.1f} MiB parquet")
            runs = variants(work, rows, src)
            for round_ in range(args.repeats):
                order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
                for name in order:
                    fresh_homes(work)
                    cmd, env, cwd = runs[name]
                    results.setdefault((name, rows), []).append(run_measured(cmd, env, cwd))
            exo = __import__("polars").read_parquet(work / "exo_out.parquet")
            duck = __import__("polars").read_parquet(work / "duck_out.parquet")
            # float sums depend on summation order (parallel), so totals are compared with a tolerance
            same = exo.select("region", "n").equals(duck.select("region", "n")) and all(
                abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1) for a, b in zip(exo["total"], duck["total"]))
            assert same, f"the cluster's result differs from the DuckDB script's:\n{exo}\n{duck}"
    names = ["duckdb script", "exo cluster", "dagster+pandas", "dagster+polars"]
    med = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    rss = {k: max(r for _, r in v) for k, v in results.items()}
    print(f"\n{'variant':16} {'t@' + format(args.small, ','):>10} {'t@' + format(args.rows, ','):>14} {'peak RSS':>10} {'ns/row':>8} {'per-row vs duckdb':>18} {'total vs exo':>12}")
    per_row = {n: (med[(n, args.rows)] - med[(n, args.small)]) / (args.rows - args.small) for n in names}
    for n in names:
        print(f"{n:16} {med[(n, args.small)]:>9.2f}s {med[(n, args.rows)]:>13.2f}s {rss[(n, args.rows)]:>8.0f}MB "
              f"{per_row[n] * 1e9:>8.1f} {per_row[n] / per_row['duckdb script']:>17.2f}x {med[(n, args.rows)] / med[('exo cluster', args.rows)]:>11.2f}x")
    print(f"\ntargets: exo per-row cost <= 2x duckdb: {per_row['exo cluster'] / per_row['duckdb script']:.2f}x; "
          f"dagster+pandas / exo total >= 3x: {med[('dagster+pandas', args.rows)] / med[('exo cluster', args.rows)]:.2f}x")


if __name__ == "__main__":
    main()
