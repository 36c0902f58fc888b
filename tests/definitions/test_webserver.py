"""The code location as the Dagster UI sees it: `dagster-webserver -w workspace.yaml`, queried over GraphQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

REPO = Path(__file__).resolve().parents[2]
JOB = "exospherehost__orders_report"
KEY = ("exospherehost", "orders_report")  # asset keys: [project, cluster, step]
LOCATION = "definitions"  # workspace.yaml names it as `-m definitions` does
STARTUP_TIMEOUT_S = 90

WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on PythonError { message stack }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message className causes { message className } }
          ... on RepositoryLocation {
            name
            repositories {
              name
              jobs { name }
              assetNodes {
                assetKey { path }
                dependencyKeys { path }
                jobNames
                groupName
                description
              }
            }
          }
        }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


@contextlib.contextmanager
def webserver(tmp_path: Path, extra_env: dict[str, str] | None = None):
    """Start the webserver on a free port; yield the port once it answers; always stop it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "EXO_STRICT_LOAD")}
    env["DAGSTER_HOME"] = str(home)
    env.update(extra_env or {})
    port = free_port()
    log_path = tmp_path / "webserver.log"
    exe = Path(sys.executable).parent / "dagster-webserver"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown reaches the code server too
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"webserver exited with {proc.returncode}:\n{log_path.read_text()[-5000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"webserver did not answer in {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()[-5000:]}"
                )
            time.sleep(0.5)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def location_entry(port: int) -> dict:
    """The `definitions` entry of the workspace, once it has finished loading."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        workspace = post_graphql(port, WORKSPACE_QUERY)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        entries = {e["name"]: e for e in workspace["locationEntries"]}
        assert set(entries) == {LOCATION}, entries
        entry = entries[LOCATION]
        if entry["loadStatus"] == "LOADED":
            return entry
        assert time.monotonic() < deadline, f"location still {entry['loadStatus']}"
        time.sleep(0.5)


def test_code_location_loads_with_the_demo_job_and_assets(tmp_path):
    with webserver(tmp_path) as port:
        entry = location_entry(port)
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    assert location["name"] == LOCATION
    jobs = {job["name"] for repo in location["repositories"] for job in repo["jobs"]}
    assert JOB in jobs, jobs
    nodes = {tuple(n["assetKey"]["path"]): n for repo in location["repositories"] for n in repo["assetNodes"]}
    for step in ("files", "orders", "revenue", "report"):
        assert (*KEY, step) in nodes, sorted(nodes)
        assert JOB in nodes[(*KEY, step)]["jobNames"]
    deps = lambda step: {tuple(d["path"]) for d in nodes[(*KEY, step)]["dependencyKeys"]}  # noqa: E731
    assert (*KEY, "orders") in deps("revenue")
    assert (*KEY, "files") in deps("orders")
    assert (*KEY, "revenue") in deps("report")
    assert deps("files") == set()


BROKEN = (
    "version: 0.0.1b\n"
    "cluster:\n"
    "  identifier: exospherehost/broken\n"
    "  satellites:\n"
    "    - name: Find files\n"
    "      uses: satellite/exospherehost/get-filez\n"
    "      identifier: files\n"
    "      config:\n"
    "        provider: local\n"
    "        folder-path: data/orders\n"
)


def _broken_file(tmp_path: Path) -> tuple[Path, str]:
    bad = tmp_path / "clusters" / "broken.yaml"
    bad.parent.mkdir()
    bad.write_text(BROKEN)
    line = 6
    column = BROKEN.splitlines()[line - 1].index("satellite/") + 1
    return bad, f"{bad}:{line}:{column}"


def test_a_broken_cluster_file_is_an_error_asset_and_the_rest_loads(tmp_path):
    """The default: the healthy clusters load; the broken file is an asset in group `exo_errors`."""
    bad, where = _broken_file(tmp_path)
    with webserver(tmp_path, {"EXO_CLUSTERS": str(bad.parent)}) as port:
        entry = location_entry(port)
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    [repo] = location["repositories"]
    assert JOB in {job["name"] for job in repo["jobs"]}
    [error] = [n for n in repo["assetNodes"] if n["groupName"] == "exo_errors"]
    assert error["assetKey"]["path"][1].startswith("broken_")
    assert f"{where}: error: unknown satellite `satellite/exospherehost/get-filez`" in error["description"]
    assert "`satellite/exospherehost/get-files`" in error["description"]  # the suggestion


def test_broken_cluster_with_strict_load_fails_the_location_with_a_located_error(tmp_path):
    bad, where = _broken_file(tmp_path)
    # a folder and the file inside it: two entries, one cluster file (they are de-duplicated)
    with webserver(
        tmp_path, {"EXO_CLUSTERS": os.pathsep.join([str(bad.parent), str(bad)]), "EXO_STRICT_LOAD": "1"}
    ) as port:
        entry = location_entry(port)
    error = entry["locationOrLoadError"]
    assert error["__typename"] == "PythonError", error
    # Dagster wraps any import-time failure in DagsterUserCodeLoadError; the spec error is its cause.
    chain = [error["message"], *(cause["message"] for cause in error["causes"])]
    located = [m for m in chain if where in m]
    assert located, chain
    assert "unknown satellite `satellite/exospherehost/get-filez`" in located[0]
    assert "`satellite/exospherehost/get-files`" in located[0]  # the suggestion
    assert located[0].count(where) == 1 and "1 error" in located[0]
