"""Fixed cost of one run: a 1-step cluster vs a 1-asset hand-written Dagster module, through `dagster job execute`.

    .venv/bin/python -m benchmarks.bench_fixed_cost                 # 9 interleaved repeats (A B, B A, ...)
    .venv/bin/python -m benchmarks.bench_fixed_cost --importtime    # + where the exo module's import time goes

Both variants run `dagster job execute -f <module>.py -j <job>` in a fresh process, each against its own
DAGSTER_HOME (Dagster's default instance, created once) and exo data folder:

  dagster hand-written   baseline: a module with one `@dg.asset` that `pl.read_parquet`s a 10-row file,
                         a job over it on Dagster's in-process executor (what exo picks for a chain of
                         CPU steps) and Dagster's FilesystemIOManager.
  dagster, default ...   informational, with --multiprocess: the same module on Dagster's default
                         (multiprocess) executor, which starts a process for the step.
  exo 1-step cluster     a module that is `defs = exo_dagster.location.definitions_for(<folder>)`, the folder
                         holding one cluster file whose only step is the built-in `read-table` of the same file.

Both import from bytecode caches, as an installed package does: pip compiles a wheel's modules when it installs
it, and Dagster's and Polars' own modules here were compiled that way. This checkout is an editable install, and
where PYTHONDONTWRITEBYTECODE is set (this sandbox sets it) its modules would be compiled from source in every
process (about 0.12 s for exo's 100-odd modules), so the set-up runs `compileall` over exo_dagster and satellites
first, as `pip install` does.

A single step makes the run's fixed cost visible: process start, imports, the location's load (parse,
check, compile), the run's set-up and tear-down. Target: exo / hand-written <= 1.10x (median, with the
median of same-round ratios beside it). A miss prints the import-time breakdown on its own.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .clusters import write_small_parquet
from .harness import load, print_header

TARGET_RATIO = 1.10
REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/fixed-cost
  title: one step
  satellites:
    - name: read
      uses: satellite/exospherehost/read-table
      identifier: s0000
      config:
        path: {data}
"""

EXO_MODULE = """\
from exo_dagster.location import definitions_for

defs = definitions_for({folder!r})
"""

HAND_MODULE = """\
import dagster as dg
import polars as pl


@dg.asset(group_name="hand_fixed_cost")
def s0000():
    return pl.read_parquet({data!r})


defs = dg.Definitions(assets=[s0000], jobs=[dg.define_asset_job("hand_fixed_cost", selection=[s0000]{executor})],
                      resources={{"io_manager": dg.FilesystemIOManager(base_dir={base!r})}})
"""


def compile_bytecode() -> None:
    """What `pip install` does for a wheel's modules: their .pyc files, so no run compiles exo from source."""
    import compileall

    for package in ("exo_dagster", "satellites"):
        compileall.compile_dir(str(REPO / package), quiet=1)


def setup(work: Path, multiprocess: bool = False) -> dict[str, tuple[list[str], dict]]:
    """The two commands and their environments."""
    compile_bytecode()
    data = write_small_parquet(str(work))
    clusters = work / "clusters"
    clusters.mkdir()
    (clusters / "fixed.yaml").write_text(CLUSTER.format(data=data))
    (work / "exo_defs.py").write_text(EXO_MODULE.format(folder=str(clusters)))
    # the same executor as the compiled 1-step cluster (a chain of CPU steps runs in-process); --multiprocess adds
    # Dagster's default executor, a step subprocess, for scale
    (work / "hand_defs.py").write_text(
        HAND_MODULE.format(data=data, base=str(work / "hand-fs"), executor=", executor_def=dg.in_process_executor")
    )
    (work / "hand_mp_defs.py").write_text(HAND_MODULE.format(data=data, base=str(work / "hand-fs"), executor=""))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "DAGSTER_"))}
    base_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    variants = {}
    for name, module, job in (
        ("dagster hand-written", "hand_defs.py", "hand_fixed_cost"),
        ("exo 1-step cluster", "exo_defs.py", "bench__fixed_cost"),
        *([("dagster, default executor", "hand_mp_defs.py", "hand_fixed_cost")] if multiprocess else []),
    ):
        home = work / f"home-{module[:-3]}"
        home.mkdir()
        env = {**base_env, "DAGSTER_HOME": str(home), "EXO_DATA_DIR": str(work / f"data-{module[:-3]}")}
        variants[name] = ([DAGSTER, "job", "execute", "-f", str(work / module), "-j", job], env)
    return variants


_TIMED = """\
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t
if rc.returncode:
    sys.stderr.write(rc.stderr[-4000:]); sys.exit(rc.returncode)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([wall, usage.ru_utime + usage.ru_stime]))
"""


def run_timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the whole process tree) of one command, from a fresh wrapper."""
    import json

    out = subprocess.run([sys.executable, "-c", _TIMED, *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    wall, cpu = json.loads(out.stdout)
    return wall, cpu


def interleaved(variants: dict[str, tuple[list[str], dict]], repeats: int, cwd: Path) -> tuple[dict, dict]:
    names = list(variants)
    for name in names:  # warm-up: .pyc files, each DAGSTER_HOME's storages
        run_timed(*variants[name], cwd)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, cpu = run_timed(*variants[name], cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return walls, cpus


PROBE = "import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)\n"


def fresh_import(code: str, env: dict, cwd: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def import_breakdown(work: Path, env: dict, repeats: int, top: int) -> None:
    """Fresh-interpreter import times (median), then `-X importtime`'s largest top-level packages of the exo module."""
    steps = [
        ("import dagster", "import dagster"),
        ("import hand_defs (dagster + polars + 1 asset)", "import hand_defs"),
        ("import exo_dagster.location", "import exo_dagster.location"),
        ("import exo_defs (the whole location load)", "import exo_defs"),
    ]
    env = {**env, "PYTHONPATH": os.pathsep.join((str(work), env.get("PYTHONPATH", "")))}
    print(f"\n-- import time in a fresh interpreter, median of {repeats} (each after the one above it)")
    for label, code in steps:
        times = [fresh_import(code, env, work) for _ in range(repeats)]
        print(
            f"   {label:48s} {statistics.median(times) * 1e3:7.0f} ms  (min {min(times) * 1e3:.0f}, max "
            f"{max(times) * 1e3:.0f})"
        )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import exo_defs"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    own: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    for line in out.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        self_us, cum_us, indent, module = int(match[1]), int(match[2]), len(match[3]), match[4]
        top_name = module.split(".")[0]
        own[top_name] = own.get(top_name, 0) + self_us
        if indent == 3:  # imported by exo_defs itself (top level: 1 space, each level 2 more)
            cumulative[module] = cum_us
    print(
        f"\n-- `python -X importtime -c 'import exo_defs'`: own import time by top-level package (one run), top {top}"
    )
    for name, us in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"   {name:32s} {us / 1e3:7.1f} ms")
    print(
        "   direct imports of exo_defs (cumulative):",
        ", ".join(f"{m} {us / 1e3:.0f} ms" for m, us in cumulative.items()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per variant (>= 7), after one warm-up each")
    parser.add_argument("--importtime", action="store_true", help="add the import-time breakdown")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--multiprocess", action="store_true", help="add the hand-written module on Dagster's default executor"
    )
    args = parser.parse_args(argv)

    print_header("bench_fixed_cost: 1-step cluster vs 1-asset Dagster module, `dagster job execute`, fresh processes")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="exo-bench-fixed-") as folder:
        work = Path(folder)
        variants = setup(work, args.multiprocess)
        times, cpus = interleaved(variants, args.repeats, work)
        base_name, exo_name = list(variants)[:2]
        base, exo = times[base_name], times[exo_name]
        print(
            f"\n-- {args.repeats} runs each, interleaved (A B, B A, ...), seconds of the whole command: wall, and CPU "
            f"(user + system) beside it"
        )
        for name, values in times.items():
            print(
                f"   {name:26s} wall median {statistics.median(values):.3f} s  min {min(values):.3f}  max "
                f"{max(values):.3f}  "
                f"all {' '.join(f'{v:.2f}' for v in values)}"
            )
            print(
                f"   {'':26s} CPU  median {statistics.median(cpus[name]):.3f} s  min {min(cpus[name]):.3f}  "
                f"max {max(cpus[name]):.3f}"
            )
        cpu_ratio = statistics.median(cpus[exo_name]) / statistics.median(cpus[base_name])
        cpu_paired = statistics.median(a / b for a, b in zip(cpus[exo_name], cpus[base_name]))
        print(
            f"   CPU: {cpu_ratio:.2f}x (paired {cpu_paired:.2f}x), informational: less sensitive to other load than "
            "wall time"
        )
        ratio = statistics.median(exo) / statistics.median(base)
        paired = statistics.median(a / b for a, b in zip(exo, base))
        extra = statistics.median(a - b for a, b in zip(exo, base))
        ok = ratio <= TARGET_RATIO
        print(
            f"\nTARGET {exo_name} / {base_name} <= {TARGET_RATIO:.2f}x: {ratio:.2f}x (ratio of medians; paired "
            f"{paired:.2f}x; exo adds {extra * 1e3:.0f} ms per run, median of same-round differences) -> "
            f"{'PASS' if ok else 'FAIL'}"
        )
        if args.importtime or not ok:
            import_breakdown(work, variants[exo_name][1], max(3, args.repeats // 2), args.top)
    print(f"\n(total benchmark wall time {time.perf_counter() - started:.1f} s; {load()} at end)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
