"""Location benchmark (issue 9): what per-file isolation and whole-location validation cost.

  (a) `exo validate` of one 1,000-step cluster, now including Dagster's repository build and the
      resolution of every job (`build_location([file])`), against the hand-written floor: the same
      1,000 bare `@dg.asset`s built into Definitions, repository built, job resolved.
      Target: <= 1.3x.
  (b) Loading a location of 50 generated clusters (every feature) where one file is broken,
      against the same 49 healthy files alone. Target: all 49 present, <= 1.1x.

Each figure is the median of several rounds in one process, baseline and subject alternating in
the same rounds; the paired ratio is the median of per-round ratios.

    .venv/bin/python -m benchmarks.bench_location [--repeats 7]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from exo_dagster.location import build_location

from .bench_compile import hand_written_defs
from .clusters import chain_yaml
from .harness import Result, load, paired_ratio, print_header, table, time_once

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.exo_dagster.clusters_corpus import write_corpus  # noqa: E402  (the test suite's generated clusters)

VALIDATE_TARGET, LOCATION_TARGET = 1.3, 1.1


def floor_resolved(steps: int) -> None:
    defs = hand_written_defs(steps)
    repo = defs.get_repository_def()
    for name in repo.job_names:
        repo.get_job(name)


def validated(path: Path, expect_broken: int = 0, expect_clusters: int | None = None) -> None:
    built = build_location([path])
    assert len(built.broken) == expect_broken, built.error().report()
    if expect_clusters is not None:
        assert len(built.clusters) == expect_clusters
    repo = built.definitions.get_repository_def()
    for name in repo.job_names:
        repo.get_job(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    print_header("bench_location: exo validate with job resolution; a location with one broken file")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * args.steps + 2000))  # Dagster's DFS, for the floor too
    started = time.perf_counter()
    verdict = 0
    with tempfile.TemporaryDirectory(prefix="exo-bench-loc-") as folder:
        root = Path(folder)
        chain = root / "chain.yaml"
        chain.write_text(chain_yaml(args.steps))
        floor, exo = (
            Result(f"dagster floor: {args.steps} bare assets, built + resolved"),
            Result(f"exo validate: {args.steps}-step cluster (parse, compile, names, resolve)"),
        )
        floor_resolved(args.steps), validated(chain)  # warm-up
        for _ in range(args.repeats):
            floor.times.append(time_once(lambda: floor_resolved(args.steps)))
            exo.times.append(time_once(lambda: validated(chain)))
        print()
        print(table([floor, exo], baseline=floor, title=f"-- (a) validate {args.steps} steps"))
        ratio_a = exo.median / floor.median
        ok_a = ratio_a <= VALIDATE_TARGET
        print(
            f"TARGET (a) <= {VALIDATE_TARGET}x: {ratio_a:.2f}x (paired {paired_ratio(exo, floor):.2f}x) -> "
            f"{'PASS' if ok_a else 'FAIL'}"
        )

        healthy, with_broken = root / "healthy", root / "with_broken"
        write_corpus(healthy, 49)
        shutil.copytree(healthy, with_broken)
        (with_broken / "zz_broken.yaml").write_text(
            (healthy / "c01.yaml")
            .read_text()
            .replace("team1/c1", "team9/broken")
            .replace("exospherehost/sql", "exospherehost/sqll", 1)
        )
        alone, broken = Result("49 healthy clusters alone"), Result("the same 49 + 1 broken file")
        validated(healthy, 0, 49), validated(with_broken, 1, 49)  # warm-up, and the 49 are all present
        for _ in range(args.repeats):
            alone.times.append(time_once(lambda: validated(healthy, 0, 49)))
            broken.times.append(time_once(lambda: validated(with_broken, 1, 49)))
        print()
        print(table([alone, broken], baseline=alone, title="-- (b) a location of 50 cluster files, one broken"))
        ratio_b = broken.median / alone.median
        ok_b = ratio_b <= LOCATION_TARGET
        print(
            f"TARGET (b) <= {LOCATION_TARGET}x with all 49 present: {ratio_b:.2f}x (paired "
            f"{paired_ratio(broken, alone):.2f}x) "
            f"-> {'PASS' if ok_b else 'FAIL'}"
        )
        verdict = 0 if ok_a and ok_b else 1
    print(
        f"\n(dagster {dg.__version__}; total benchmark wall time {time.perf_counter() - started:.1f} s; {load()} at "
        "end)"
    )
    return verdict


if __name__ == "__main__":
    sys.exit(main())
