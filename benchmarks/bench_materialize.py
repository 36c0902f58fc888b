"""UI "Materialize all" on a cluster's asset group vs launching the cluster's job (issue 11).

Starts `dagster-webserver` and `dagster-daemon` on a fresh DAGSTER_HOME over this repository's
`workspace.yaml` (the demo clusters), then alternately launches, through the webserver's GraphQL
API exactly as the UI's buttons do, the cluster's job and Dagster's implicit asset job over all of
the group's assets ("Materialize all"). Reports each run's time from launch to its end and from its
start to its end, the executor each ran on (`exo/executor`), and checks the target "Materialize all
<= 1.2x the job" on the medians of launch-to-end. Exit 1 when the target is missed.

    .venv/bin/python -m benchmarks.bench_materialize [--rounds 3] [--job exospherehost__orders_report]
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
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = (
    """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime tags { key value } } } }"""
)
ASSETS = """query Group($group: String!) { assetNodes(group: {groupName: $group, repositoryName: "__repository__",
  repositoryLocationName: "exo_dagster"}) { assetKey { path } } }"""


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        method="POST",
        headers={"Content-Type": "application/json"},
        data=json.dumps({"query": query, "variables": variables}).encode(),
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    if "errors" in body:
        raise RuntimeError(body["errors"])
    return body["data"]


def run_once(port: int, selector: dict) -> dict:
    launched_at = time.time()
    answer = graphql(
        port,
        LAUNCH,
        {
            "params": {
                "selector": {"repositoryLocationName": "exo_dagster", "repositoryName": "__repository__", **selector}
            }
        },
    )["launchRun"]
    if answer["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(answer)
    run_id = answer["run"]["runId"]
    while True:
        run = graphql(port, RUN, {"id": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            tags = {t["key"]: t["value"] for t in run["tags"]}
            return {
                "status": run["status"],
                "launch_to_end": run["endTime"] - launched_at,
                "start_to_end": run["endTime"] - run["startTime"],
                "executor": tags.get("exo/executor"),
                "cluster": tags.get("exo/cluster"),
            }
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job", default="exospherehost__orders_report")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="exo-bench-home-"))
    env = {**os.environ, "DAGSTER_HOME": str(home), "EXO_DATA_DIR": str(home / "exo")}
    port = 3000 + os.getpid() % 1000
    procs = [
        subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]
    try:
        deadline = time.time() + 240
        while True:
            try:
                keys = [n["assetKey"]["path"] for n in graphql(port, ASSETS, {"group": args.job})["assetNodes"]]
                if keys:
                    break
            except Exception:
                pass
            if time.time() > deadline:
                raise RuntimeError("the webserver did not load the code location")
            time.sleep(1)
        variants = {
            "job": {"jobName": args.job},
            "materialize all": {"jobName": "__ASSET_JOB", "assetSelection": [{"path": k} for k in keys]},
        }
        results: dict[str, list[dict]] = {name: [] for name in variants}
        run_once(port, variants["job"])  # warm-up: first run pays the code server's imports
        for _ in range(args.rounds):
            for name, selector in variants.items():
                results[name].append(run_once(port, selector))
        for name, runs in results.items():
            print(
                f"{name:16s} launch->end median {statistics.median(r['launch_to_end'] for r in runs):6.2f}s  "
                f"start->end median {statistics.median(r['start_to_end'] for r in runs):6.2f}s  "
                f"executor {sorted({r['executor'] for r in runs})}  cluster tag "
                f"{sorted({str(r['cluster']) for r in runs})}  "
                f"status {sorted({r['status'] for r in runs})}"
            )
        ratio = statistics.median(r["launch_to_end"] for r in results["materialize all"]) / statistics.median(
            r["launch_to_end"] for r in results["job"]
        )
        print(f"materialize all / job (launch->end medians): {ratio:.2f}x  (target <= 1.2x)")
        return 0 if ratio <= 1.2 else 1
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
