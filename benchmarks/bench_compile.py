"""Compile-time benchmark: cluster YAML with 10 / 100 / 1000 steps -> Cluster -> Definitions -> job.

Measures, each as the median of several repeats in one process:

  (a) parse      `parse_cluster(text, file)`: YAML, spec validation, satellite configs, references
  (b) compile    `compile_cluster(cluster)` -> `dagster.Definitions`
  (c) resolve    Dagster's own `defs.resolve_job_def(job_name)` on a fresh Definitions
                 (what a code-location load / first run pays on top; not part of the target)

Baseline, measured in the same rounds: the same chain written by hand as plain `@dg.asset`s
(`dagster floor`), so the ratio shows how much of our cost is Dagster's own per-asset cost.

Target (product owner): 1,000 steps parse + compile into Definitions in under 1 s.

    .venv/bin/python -m benchmarks.bench_compile            # default sizes 10 100 1000
    .venv/bin/python -m benchmarks.bench_compile --profile  # + cProfile hot spots at 1000 steps
    .venv/bin/python -m benchmarks.bench_compile --what-if  # + parse with libyaml's CSafeLoader
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time

import dagster as dg
import yaml

import exo_dagster.spec.located_yaml as located_yaml
from exo_dagster import compile_cluster, parse_cluster

from .clusters import chain_yaml
from .harness import Result, fmt_seconds, load, paired_ratio, print_header, table, time_once

TARGET_STEPS = 1000
TARGET_SECONDS = 1.0


def hand_written_defs(steps: int) -> dg.Definitions:
    """The Dagster floor: the same chain as plain `@dg.asset`s with one `AssetIn` each, plus a job."""
    group = f"hand_chain_{steps}"
    assets = []
    for i in range(steps):
        key = dg.AssetKey([group, f"s{i:04d}"])
        ins = {"upstream": dg.AssetIn(key=dg.AssetKey([group, f"s{i - 1:04d}"]))} if i else {}
        if i:

            @dg.asset(key=key, ins=ins, group_name=group)
            def _step(context, upstream):
                return upstream
        else:

            @dg.asset(key=key, group_name=group)
            def _step(context):
                return None

        assets.append(_step)
    job = dg.define_asset_job(name=group, selection=dg.AssetSelection.groups(group))
    return dg.Definitions(assets=assets, jobs=[job])


RECURSION_FAILURES: dict[str, int] = {"exo": 0, "floor": 0}
RAISED_LIMIT = 20_000


def resolve_timed(defs: dg.Definitions, job: str, rebuild, who: str, record: bool) -> float:
    """Time `defs.resolve_job_def(job)`.

    Dagster's `create_adjacency_lists` walks the graph with a recursive DFS whose depth can reach
    the chain length, so a ~1000-step chain sometimes (depending on node order) hits Python's default
    recursion limit of 1000. We count that, and time a fresh resolution under a raised limit instead.
    """
    try:
        return time_once(lambda: defs.resolve_job_def(job))
    except dg.DagsterInvalidDefinitionError as exc:
        if not isinstance(exc.__cause__, RecursionError):
            raise
    if record:
        RECURSION_FAILURES[who] += 1
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, RAISED_LIMIT))
    try:
        fresh = rebuild()
        return time_once(lambda: fresh.resolve_job_def(job))
    finally:
        sys.setrecursionlimit(old)


def bench_size(steps: int, repeats: int, folder: str) -> dict[str, Result]:
    text = chain_yaml(steps)
    file = os.path.join(folder, f"chain-{steps}.yaml")  # only its folder is used (base_dir)
    res = {
        name: Result(name)
        for name in (
            "dagster floor: build Definitions",
            "exo parse",
            "exo compile",
            "exo parse+compile",
            "dagster floor: resolve_job_def",
            "exo resolve_job_def",
        )
    }
    job_name = parse_cluster(text, file).job_name
    hand_job = f"hand_chain_{steps}"

    def one_round(record: bool) -> None:
        box: dict = {}
        t_floor = time_once(lambda: box.__setitem__("hand", hand_written_defs(steps)))
        t_parse = time_once(lambda: box.__setitem__("cluster", parse_cluster(text, file)))
        t_compile = time_once(lambda: box.__setitem__("defs", compile_cluster(box["cluster"])))
        t_resolve = resolve_timed(box["defs"], job_name, lambda: compile_cluster(box["cluster"]), "exo", record)
        t_floor_resolve = resolve_timed(box["hand"], hand_job, lambda: hand_written_defs(steps), "floor", record)
        if record:
            for name, value in (
                ("dagster floor: build Definitions", t_floor),
                ("exo parse", t_parse),
                ("exo compile", t_compile),
                ("exo parse+compile", t_parse + t_compile),
                ("dagster floor: resolve_job_def", t_floor_resolve),
                ("exo resolve_job_def", t_resolve),
            ):
                res[name].times.append(value)

    one_round(record=False)  # warm-up: lazy imports, pydantic/dagster caches
    for _ in range(repeats):
        one_round(record=True)
    return res


def cold_first_compile(steps: int, runs: int) -> tuple[Result, Result]:
    """In fresh interpreters: import time, then the first parse+compile (what a code-location load pays)."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import exo_dagster, satellites\n"
        "t1 = time.perf_counter()\n"
        "from benchmarks.clusters import chain_yaml\n"
        f"text = chain_yaml({steps})\n"
        "t2 = time.perf_counter()\n"
        "exo_dagster.compile_cluster(exo_dagster.parse_cluster(text, '/tmp/cold.yaml'))\n"
        "t3 = time.perf_counter()\n"
        "print(t1 - t0, t3 - t2)\n"
    )
    imports, first = (
        Result("cold: import exo_dagster + satellites"),
        Result(f"cold: first parse+compile, {steps} steps"),
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
        a, b = (float(x) for x in out.stdout.split())
        imports.times.append(a)
        first.times.append(b)
    return imports, first


def profile_top(label: str, fn, limit: int = 18) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats(key).print_stats(limit)
        body = buf.getvalue()
        start = body.find("   ncalls")
        print(f"\n--- cProfile, {label}, top {limit} by {key}")
        print(body[start:].rstrip() if start >= 0 else body.rstrip())


def what_if_libyaml(steps: int, repeats: int, folder: str) -> None:
    """Parse time with exo's located loader based on libyaml's CSafeLoader (runtime patch, not a code change)."""
    if not getattr(yaml, "__with_libyaml__", False):
        print("\nwhat-if libyaml: PyYAML has no libyaml here; skipped")
        return
    text = chain_yaml(steps)
    file = os.path.join(folder, f"chain-{steps}.yaml")
    original = located_yaml._Loader

    class _CLoader(yaml.CSafeLoader):
        pass

    pure, fast = (
        Result(f"exo parse, {steps} steps, current loader ({original.__mro__[1].__name__})"),
        Result(f"exo parse, {steps} steps, CSafeLoader-based loader"),
    )
    try:
        for _ in range(repeats + 1):
            located_yaml._Loader = original
            pure.times.append(time_once(lambda: parse_cluster(text, file)))
            located_yaml._Loader = _CLoader
            fast.times.append(time_once(lambda: parse_cluster(text, file)))
        located_yaml._Loader = original
        a, b = parse_cluster(text, file), None
        located_yaml._Loader = _CLoader
        b = parse_cluster(text, file)
        same = [s.location for s in a.steps] == [s.location for s in b.steps]
    finally:
        located_yaml._Loader = original
    pure.times.pop(0), fast.times.pop(0)  # first round is warm-up
    print()
    print(table([pure, fast], baseline=pure, title="what-if: YAML loader"))
    print(f"(step locations identical with both loaders: {same})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per size (after one warm-up)")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh-interpreter runs for the cold figure (0: skip)")
    parser.add_argument("--profile", action="store_true", help="cProfile parse/compile/resolve at the largest size")
    parser.add_argument("--what-if", action="store_true", help="also time parsing with a libyaml-based loader")
    args = parser.parse_args(argv)

    print_header("bench_compile: cluster YAML -> Cluster -> dagster.Definitions")
    print(
        f"   dagster {dg.__version__}, PyYAML {yaml.__version__} (libyaml available: {yaml.__with_libyaml__}; "
        f"exo loader base: {located_yaml._Loader.__mro__[1].__name__})"
    )
    started = time.perf_counter()
    summary: dict[int, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="exo-bench-") as folder:
        for steps in args.sizes:
            RECURSION_FAILURES.update(exo=0, floor=0)
            res = bench_size(steps, args.repeats, folder)
            summary[steps] = res
            build = [
                res[k] for k in ("dagster floor: build Definitions", "exo parse", "exo compile", "exo parse+compile")
            ]
            resolve = [res[k] for k in ("dagster floor: resolve_job_def", "exo resolve_job_def")]
            print()
            print(table(build, baseline=build[0], title=f"-- {steps} steps: build"))
            print(
                table(resolve, baseline=resolve[0], title=f"-- {steps} steps: Dagster job resolution (not in target)")
            )
            if any(RECURSION_FAILURES.values()):
                print(
                    f"!! RecursionError inside Dagster's job resolution at the default recursion limit "
                    f"({sys.getrecursionlimit()}): exo {RECURSION_FAILURES['exo']}/{args.repeats}, "
                    f"hand-written floor {RECURSION_FAILURES['floor']}/{args.repeats} timed rounds; "
                    f"those rounds were re-timed with the limit raised to {RAISED_LIMIT}"
                )
        if args.cold_runs:
            imports, first = cold_first_compile(max(args.sizes), args.cold_runs)
            print()
            print(table([imports, first], title="-- fresh interpreter (informational; median of runs)"))
        if args.what_if:
            what_if_libyaml(max(args.sizes), args.repeats, folder)

        verdict = 0
        if TARGET_STEPS in summary:
            got = summary[TARGET_STEPS]["exo parse+compile"].median
            ok = got < TARGET_SECONDS
            verdict = 0 if ok else 1
            res = summary[TARGET_STEPS]
            floor = res["dagster floor: build Definitions"]
            print(
                f"\nTARGET {TARGET_STEPS} steps parse+compile < {TARGET_SECONDS:.1f} s: median {fmt_seconds(got)} -> "
                f"{'PASS' if ok else 'FAIL'} (headroom {TARGET_SECONDS / got:.2f}x)"
            )
            print(
                f"       vs the Dagster floor (bare @dg.asset chain, same rounds): {got / floor.median:.2f}x "
                f"(paired {paired_ratio(res['exo parse+compile'], floor):.2f}x); the absolute figure moves with the "
                f"machine's load, the ratio much less"
            )
            with_resolve = got + summary[TARGET_STEPS]["exo resolve_job_def"].median
            print(f"       (+ Dagster job resolution: {fmt_seconds(with_resolve)} end to end, informational)")
            if not ok:
                print("target missed: profiling (see below)")
                args.profile = True
        else:
            print(f"\n(target is stated for {TARGET_STEPS} steps; not measured in this run)")

        if args.profile:
            steps = max(args.sizes)
            text, file = chain_yaml(steps), os.path.join(folder, f"chain-{steps}.yaml")
            box: dict = {}
            profile_top(f"parse_cluster ({steps} steps)", lambda: box.__setitem__("c", parse_cluster(text, file)))
            profile_top(f"compile_cluster ({steps} steps)", lambda: box.__setitem__("d", compile_cluster(box["c"])))
            profile_top(f"resolve_job_def ({steps} steps)", lambda: box["d"].resolve_job_def(box["c"].job_name))
    print(f"\n(total benchmark wall time {time.perf_counter() - started:.1f} s; {load()} at end)")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
