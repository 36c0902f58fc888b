"""`dagster dev` time to first UI answer, and the code location's load against its floor.

    .venv/bin/python -m benchmarks.bench_dev_startup --repeats 3

(a) `dagster dev -w workspace.yaml` in a fresh DAGSTER_HOME: seconds until the webserver answers
    `/server_info`, and until GraphQL reports the code location LOADED (what a user waits for
    before the first page shows the clusters).
(b) The code location's load, `import definitions` in a fresh interpreter (parse, check, compile
    every cluster of definitions/, presets, name claims, one repository resolution), against the
    floor of `import dagster` plus parsing and compiling the same cluster files with exo's compiler
    and nothing else (no location machinery), measured in alternating fresh interpreters.
    Target: <= 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .harness import print_header

REPO = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent

LOCATION = "import definitions"
FLOOR = """
import dagster
from pathlib import Path
from exo_dagster import compile_clusters, load_cluster_file
defs = compile_clusters([load_cluster_file(f) for f in sorted(Path("definitions").glob("*.yaml"))])
"""
PROBE = "import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)\n"


def fresh(code: str, home: str) -> float:
    env = {**os.environ, "DAGSTER_HOME": home, "PYTHONPATH": str(REPO)}
    env.pop("EXO_CLUSTERS", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        method="POST",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def dev_startup(port: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DAGSTER_HOME": home, "EXO_DATA_DIR": os.path.join(home, "exo")}
        env.pop("EXO_CLUSTERS", None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(EXE / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            first = loaded = None
            while loaded is None:
                assert proc.poll() is None, "dagster dev exited"
                assert time.monotonic() - started < 300, "dagster dev did not load in 300 s"
                try:
                    if first is None:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                            if r.status == 200:
                                first = time.monotonic() - started
                    if first is not None:
                        entries = graphql(
                            port,
                            "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
                            "locationOrLoadError { __typename } } } } }",
                        )["workspaceOrError"]["locationEntries"]
                        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                            assert all(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries)
                            loaded = time.monotonic() - started
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.1)
            return first, loaded
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=3391)
    args = parser.parse_args()
    print_header("bench_dev_startup: dagster dev to first answer; the code location's load vs its floor")

    starts = [dev_startup(args.port) for _ in range(args.repeats)]
    first, loaded = [s[0] for s in starts], [s[1] for s in starts]
    print(
        f"(a) dagster dev: first UI answer median {statistics.median(first):.2f} s (min {min(first):.2f}, max "
        f"{max(first):.2f}); "
        f"code location LOADED median {statistics.median(loaded):.2f} s (min {min(loaded):.2f}, max {max(loaded):.2f})"
    )

    location, floor = [], []
    with tempfile.TemporaryDirectory() as home:
        fresh(LOCATION, home)  # warm-up: pyc files, the home's storages
        fresh(FLOOR, home)
        for _ in range(max(args.repeats, 5)):
            location.append(fresh(LOCATION, home))
            floor.append(fresh(FLOOR, home))
    ratio = statistics.median(location) / statistics.median(floor)
    paired = statistics.median(a / b for a, b in zip(location, floor))
    print(
        f"(b) import definitions median {statistics.median(location):.3f} s; floor (import dagster + parse + compile) "
        f"median {statistics.median(floor):.3f} s -> {ratio:.2f}x (paired {paired:.2f}x); "
        f"TARGET <= 1.2x: {'PASS' if ratio <= 1.2 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
