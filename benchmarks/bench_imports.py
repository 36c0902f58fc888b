"""Import cost of the layers: what a satellite author pays, and what the code location pays.

    .venv/bin/python -m benchmarks.bench_imports --repeats 7
    .venv/bin/python -m benchmarks.bench_imports --repeats 7 --before /path/to/older/checkout

Each figure is a fresh interpreter (`python -c ...`, the time measured inside it with
perf_counter around the import), rounds interleaved so load drifts hit every variant alike:

- `import dagster`: the floor every Dagster code location pays;
- the SDK and one satellite (`import exo_dagster.sdk, satellites.tables.sql`): what a satellite
  author's test or a plugin import pays; it should load no Dagster, compiler or executor;
- `import definitions`: the code location (compiles the demo clusters), against the floor.

With `--before DIR` the same is measured in an older checkout of this repository (run from DIR,
so its code shadows the installed one), for a before/after of a refactor; its satellite import is
`--before-satellite` (default `satellites.sql`, the flat layout's module).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .harness import print_header

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import sys, time, json
t = time.perf_counter()
{stmt}
elapsed = time.perf_counter() - t
mods = [m for m in sys.modules]
print(json.dumps({{"s": elapsed, "dagster": sum(1 for m in mods if m == "dagster" or m.startswith("dagster.")),
                   "exo": sum(1 for m in mods if m.startswith(("exo_dagster", "satellites")))}}))
"""


def probe(stmt: str, cwd: Path, home: str) -> dict:
    env = {**os.environ, "DAGSTER_HOME": home, "PYTHONPATH": str(cwd)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(stmt=stmt)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"{stmt!r} in {cwd} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--before-satellite", default="satellites.sql")
    args = parser.parse_args()
    print_header("bench_imports: import cost of the SDK + one satellite, and of the code location")

    variants = {
        "import dagster": ("import dagster", REPO),
        "sdk + one satellite": ("import exo_dagster.sdk, satellites.tables.sql", REPO),
        "import definitions": ("import definitions", REPO),
    }
    if args.before:
        variants["before: one satellite"] = (f"import {args.before_satellite}", args.before)
        variants["before: import definitions"] = ("import definitions", args.before)
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as home:
        for stmt, cwd in variants.values():  # warm-up: pyc files, page cache, the home's storages
            probe(stmt, cwd, home)
        for _ in range(args.repeats):
            for name, (stmt, cwd) in variants.items():
                results[name].append(probe(stmt, cwd, home))

    floor = statistics.median(r["s"] for r in results["import dagster"])
    print(
        f"{'variant':30s} {'median':>8s} {'min':>8s} {'max':>8s} {'x dagster':>10s} {'dagster mods':>13s} "
        f"{'exo mods':>9s}"
    )
    for name, rows in results.items():
        times = [r["s"] for r in rows]
        med = statistics.median(times)
        print(
            f"{name:30s} {med:8.3f} {min(times):8.3f} {max(times):8.3f} {med / floor:10.2f} "
            f"{rows[-1]['dagster']:13d} {rows[-1]['exo']:9d}"
        )
    if args.before:
        for now, then in (
            ("sdk + one satellite", "before: one satellite"),
            ("import definitions", "before: import definitions"),
        ):
            a = [r["s"] for r in results[now]]
            b = [r["s"] for r in results[then]]
            paired = statistics.median(x / y for x, y in zip(a, b))
            print(f"{now}: after/before {statistics.median(a) / statistics.median(b):.2f}x (paired {paired:.2f}x)")


if __name__ == "__main__":
    main()
