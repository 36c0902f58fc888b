"""One broken cluster file next to healthy ones, with the real dagster-daemon and webserver: the
location loads the healthy clusters, their cron ticks and files-sensor runs go on, and the broken
file is an asset in the group `exo_errors` whose description is the located error."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from ..loopback import free_port

EXE = Path(sys.executable).parent
TIMEOUT_S = 240

DAGSTER_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""

WORKSPACE = """\
load_from:
  - python_file:
      relative_path: defs.py
      working_directory: .
      location_name: exo_isolation
"""

DEFS = """\
from exo_dagster.location import definitions_for

defs = definitions_for("clusters")
"""

EVERY_MINUTE = """\
version: 0.0.1b
cluster:
  identifier: iso/ticker
  trigger: {cron: "* * * * *"}
  satellites:
    - name: One
      uses: satellite/exospherehost/sql
      identifier: one
      config: {query: "select 1 as one"}
"""

WATCH = """\
version: 0.0.1b
cluster:
  identifier: iso/watch
  trigger:
    files: {{path: "{drop}", pattern: "*.csv", interval: 1s}}
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {{folder-path: "{drop}", allowed-extensions: [csv]}}
"""

BROKEN = """\
version: 0.0.1b
cluster:
  identifier: iso/broken
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
      config: {folder-path: data}
"""

ASSETS = """
query { assetNodes { assetKey { path } groupName description } }
"""

JOBS = """
query { repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } schedules { name } sensors { name } } } } }
"""


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation")
    home, drop, clusters = root / "home", root / "drop", root / "clusters"
    for folder in (home, drop, clusters):
        folder.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    (clusters / "ticker.yaml").write_text(EVERY_MINUTE)
    (clusters / "watch.yaml").write_text(WATCH.format(drop=drop))
    (clusters / "broken.yaml").write_text(BROKEN)
    (root / "defs.py").write_text(DEFS)
    (root / "workspace.yaml").write_text(WORKSPACE)
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_CLUSTERS", "EXO_STRICT_LOAD")}
    env.update(DAGSTER_HOME=str(home), EXO_DATA_DIR=str(root / "exo"), PYTHONUNBUFFERED="1")
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    instance.get_runs(limit=1)  # create the SQLite storage once, before two processes race to
    port = free_port()
    procs = []
    for name, args in (("webserver", ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]),
                       ("daemon", ["dagster-daemon", "run", "-w", "workspace.yaml"])):
        log = open(root / f"{name}.log", "wb")
        procs.append((subprocess.Popen([str(EXE / args[0]), *args[1:]], cwd=root, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True), root / f"{name}.log"))

    class Stack:
        pass

    stack = Stack()
    stack.root, stack.drop, stack.port, stack.instance, stack.procs = root, drop, port, instance, procs

    def logs() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for _, log in procs)

    def wait(what, check, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            for proc, log in procs:
                assert proc.poll() is None, f"{log.name} exited:\n{log.read_text()[-4000:]}"
            value = check()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{logs()}"
            time.sleep(1)

    stack.logs, stack.wait = logs, wait
    try:
        def answers():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                    return r.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False
        wait("the webserver", answers)
        yield stack
    finally:
        for proc, _ in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def test_healthy_clusters_load_and_the_broken_file_is_an_error_asset(stack):
    repo = _graphql(stack.port, JOBS)["repositoriesOrError"]["nodes"][0]
    jobs = {j["name"] for j in repo["jobs"]}
    assert {"iso__ticker", "iso__watch"} <= jobs and "iso__broken" not in jobs
    assert "iso__ticker__cron" in {s["name"] for s in repo["schedules"]}
    assert "iso__watch__files" in {s["name"] for s in repo["sensors"]}
    nodes = _graphql(stack.port, ASSETS)["assetNodes"]
    [error] = [n for n in nodes if n["groupName"] == "exo_errors"]
    assert error["assetKey"]["path"][0] == "exo_errors" and error["assetKey"]["path"][1].startswith("broken_")
    assert "broken.yaml:6:13: error: unknown satellite" in error["description"]
    assert "get-files" in error["description"]  # the closest id is suggested
    assert (stack.root / "daemon.log").read_text().count("did not load") >= 1  # the WARNING in the location log


def test_files_sensor_and_cron_schedule_keep_running(stack):
    tmp = stack.drop / ".a.part"
    tmp.write_text("id\n1\n")
    os.replace(tmp, stack.drop / "a.csv")
    watch = stack.wait("a run of iso__watch", lambda: [r for r in stack.instance.get_runs(dg.RunsFilter(job_name="iso__watch"))
                                                       if r.is_finished])
    assert watch[0].status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    ticker = stack.wait("a cron run of iso__ticker", lambda: [r for r in stack.instance.get_runs(dg.RunsFilter(job_name="iso__ticker"))
                                                              if r.is_finished], timeout=150)
    assert ticker[0].status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    assert ticker[0].tags.get("dagster/schedule_name") == "iso__ticker__cron"
