"""A tiny benchmark harness: time a callable N times, report median/min/max, compare to a baseline.

The benchmark machine is small and noisy (2 shared cores), so every figure we quote is a
median, and every comparison is a ratio against a baseline measured in the same process run.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Result:
    """Wall times (seconds) of one measured thing."""

    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def n(self) -> int:
        return len(self.times)


def time_once(fn: Callable[[], object], *, collect: bool = True) -> float:
    """Wall time of one call; a full GC first so garbage from earlier calls is not billed here."""
    if collect:
        gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Result:
    """Run `fn` `warmup` times untimed, then `repeats` times timed."""
    for _ in range(warmup):
        fn()
    result = Result(name)
    for _ in range(repeats):
        result.times.append(time_once(fn))
    return result


def measure_interleaved(
    variants: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, Result]:
    """Run the variants alternately (A B A B ...), so drift on a noisy machine hits all of them alike.

    The order is flipped every round (A B, B A, ...) so neither variant always runs "second".
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    results = {name: Result(name) for name in names}
    for round_ in range(repeats):
        order = names if round_ % 2 == 0 else list(reversed(names))
        for name in order:
            results[name].times.append(time_once(variants[name]))
    return results


def paired_ratio(result: Result, baseline: Result) -> float:
    """Median over rounds of result/baseline within the same round (after `measure_interleaved`).

    Adjacent runs share the machine's load at that moment, so this cancels bursts better than a
    ratio of medians does; quote both.
    """
    pairs = [a / b for a, b in zip(result.times, baseline.times)]
    return statistics.median(pairs)


def fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def table(results: Iterable[Result], baseline: Result | None = None, title: str | None = None) -> str:
    """A plain-text table: name, n, median, min, max and (with a baseline) median ratio."""
    rows = list(results)
    header = ["benchmark", "n", "median", "min", "max"] + (["ratio"] if baseline else [])
    lines = [
        [r.name, str(r.n), fmt_seconds(r.median), fmt_seconds(r.min), fmt_seconds(r.max)]
        + ([f"{r.median / baseline.median:.2f}x"] if baseline else [])
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = []
    if title:
        out.append(title)
    out.append(render(header))
    out.append(render(["-" * w for w in widths]))
    out.extend(render(line) for line in lines)
    if baseline:
        out.append(f"(ratio = median / median of baseline `{baseline.name}`)")
    return "\n".join(out)


def machine() -> str:
    """One line about where the numbers came from."""
    cores = os.cpu_count()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return f"python {platform.python_version()} on {platform.system()} {platform.machine()}, {cores} usable cores"


def source_version() -> str:
    """`git` commit of the tree being measured, `+dirty` when it has uncommitted changes."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def load() -> str:
    """The 1/5/15-minute load averages: above the core count, other work was competing with ours."""
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "load average unknown"


def print_header(title: str) -> None:
    print(f"== {title}")
    print(f"   {machine()}; tree {source_version()}; {load()} at start; argv: {' '.join(sys.argv)}")
    print("   noisy machine: quote medians and ratios, not single runs")


_PROBE = """\
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t
if rc.returncode:
    sys.stderr.write(rc.stderr[-4000:]); sys.exit(rc.returncode)
print(json.dumps([wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))
"""


def run_measured(cmd: list[str], env: dict, cwd) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command's whole process tree (the largest process in it),
    measured from a fresh wrapper process so nothing else this process did is counted."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", _PROBE, *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    wall, rss = json.loads(out.stdout)
    return wall, rss


def cluster_run(work, cluster_file, job: str) -> tuple[list[str], dict]:
    """The `dagster job execute` command and environment that run one cluster file against a fresh
    DAGSTER_HOME and data folder under `work` (nothing inherited from the caller's EXO_/DAGSTER_ settings)."""
    from pathlib import Path

    work = Path(work)
    (work / "home").mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "DAGSTER_"))},
        "EXO_CLUSTERS": str(cluster_file),
        "DAGSTER_HOME": str(work / "home"),
        "EXO_DATA_DIR": str(work / "exo"),
    }
    return [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "definitions", "-j", job], env
