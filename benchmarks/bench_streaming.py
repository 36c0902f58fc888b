"""Peak memory streaming a >= 2 GB Parquet input through read-table -> sql -> write-table.

The source is generated with DuckDB (hash strings, so it does not compress away). The cluster
keeps about half of the rows (a filter, no aggregate), so about 1 GB flows through `sql` and
`write-table`. Peak RSS is the largest process of the run's tree (getrusage of children), from
a fresh `dagster job execute`. Target: <= 1 GB.

    .venv/bin/python -m benchmarks.bench_streaming [--gb 2.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from .harness import cluster_run, print_header, run_measured

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/stream
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      identifier: source
      config: {{path: "{src}"}}
    - name: Keep half
      uses: satellite/exospherehost/sql
      identifier: kept
      config: {{query: "select id, a, b from source where id % 2 = 0"}}
    - name: Write
      uses: satellite/exospherehost/write-table
      identifier: written
      config: {{path: "{out}"}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.0)
    args = parser.parse_args()
    print_header(f"streaming a {args.gb} GB Parquet input: read-table -> sql -> write-table")
    import duckdb
    import polars as pl

    with tempfile.TemporaryDirectory(prefix="exo-stream-", dir=os.environ.get("EXO_BENCH_TMP")) as tmp:
        work = Path(tmp)
        src = work / "big.parquet"
        rows = int(args.gb * 2**30 / 70)  # ~70 bytes per row once written
        duckdb.sql(f"""copy (select i as id, md5(i::varchar) as a, md5((i * 31)::varchar) as b
                            from range({rows}) t(i)) to '{src}' (format parquet, compression uncompressed)""")
        size_gb = src.stat().st_size / 2**30
        print(f"   source: {rows:,} rows, {size_gb:.2f} GiB")
        cluster = work / "stream.yaml"
        out = work / "out.parquet"
        cluster.write_text(CLUSTER.format(src=src, out=out))
        cmd, env = cluster_run(work, cluster, "bench__stream")
        wall, rss = run_measured(cmd, env, ROOT)
        written = pl.scan_parquet(out).select(pl.len()).collect().item()
        assert written == (rows + 1) // 2, (written, rows)
        print(
            f"   wall {wall:.1f} s; rows written {written:,}; peak RSS {rss:.0f} MiB "
            f"({rss / 1024:.2f} GiB, target <= 1 GiB: {'met' if rss <= 1024 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
