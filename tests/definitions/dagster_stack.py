"""A real Dagster deployment for tests: a temporary DAGSTER_HOME, a workspace, `dagster-webserver` and
`dagster-daemon` processes on it, and the waits and queries the tests make against them."""

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

from tests.loopback import free_port

EXE = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 240

DAGSTER_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


LOCATION_DEFS = """\
from exo_dagster.location import definitions_for

defs = definitions_for("clusters")
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""


def workspace_yaml(location_name: str) -> str:
    return f"""\
load_from:
  - python_file:
      relative_path: defs.py
      working_directory: .
      location_name: {location_name}
"""


def post_graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        method="POST",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


@contextlib.contextmanager
def serving(root: Path, clusters: dict[str, str], location: str = "exo_test", dagster_yaml: str = DAGSTER_YAML):
    """A stack serving `clusters` ({file stem: YAML}) from one code location, webserver and daemon up."""
    stack = DagsterStack(root)
    stack.write_home(dagster_yaml)
    (root / "clusters").mkdir()
    for name, text in clusters.items():
        (root / "clusters" / f"{name}.yaml").write_text(text)
    (root / "defs.py").write_text(LOCATION_DEFS)
    (root / "workspace.yaml").write_text(workspace_yaml(location))
    stack.location = location
    stack.init_storage()
    try:
        stack.start_webserver_and_daemon()
        yield stack
    finally:
        stack.stop()


class DagsterStack:
    """The temporary instance, workspace and processes of one test module."""

    # variables the tests' processes must not inherit from the developer's shell
    CLEARED_ENV = ("EXO_DATA_DIR", "EXO_CLUSTERS", "EXO_SECRETS_BACKEND", "EXO_STRICT_LOAD")

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.data = root / "exo"
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.port = free_port()
        self.location = "exo_test"

    def write_home(self, dagster_yaml: str = DAGSTER_YAML) -> None:
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text(dagster_yaml)

    def init_storage(self) -> None:
        """Create the instance's SQLite databases here first: two processes creating them at once race."""
        from dagster._core.scheduler.instigation import InstigatorType

        self.instance.get_runs(limit=1)
        self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        self.instance.fetch_materializations(dg.AssetKey("none"), limit=1)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in self.CLEARED_ENV}
        env.update(DAGSTER_HOME=str(self.home), EXO_DATA_DIR=str(self.data), PYTHONUNBUFFERED="1")
        return env

    def start(self, name: str, args: list[str]) -> None:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(EXE / args[0]), *args[1:]],
                cwd=self.root,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, log))

    def start_webserver_and_daemon(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        self.start("webserver", ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)])
        self.start("daemon", ["dagster-daemon", "run", "-w", "workspace.yaml"])
        self.wait("the webserver", self.answers, timeout=timeout)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop_one(self, name: str) -> None:
        """Stop one process (by its log name), as an operator restarting it would."""
        for proc, log in list(self.procs):
            if log.name == f"{name}.log":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
                self.procs.remove((proc, log))
                log.rename(log.with_name(f"{name}.{time.time():.0f}.log"))

    def stop(self) -> None:
        for proc, _ in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{log.name}: exited with {proc.returncode}:\n{log.read_text()[-5000:]}")

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for _, log in self.procs)

    @property
    def instance(self) -> dg.DagsterInstance:
        from dagster._core.instance.ref import InstanceRef

        if not hasattr(self, "_instance"):
            self._instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))
        return self._instance

    def location_loaded(self) -> bool:
        """Whether the workspace's one code location is LOADED (a load error fails the test with its message)."""
        entries = self.graphql("""query { workspaceOrError { ... on Workspace { locationEntries {
            loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        [entry] = entries["workspaceOrError"]["locationEntries"]
        error = entry["locationOrLoadError"] or {}
        assert error.get("__typename") != "PythonError", error.get("message")
        return entry["loadStatus"] == "LOADED" and error.get("__typename") == "RepositoryLocation"

    def launch(self, selector: dict, run_config: dict | None = None) -> dict:
        """The UI's `launchRun` of a job (or `__ASSET_JOB` with an `assetSelection`) in this stack's location."""
        params = {"selector": {"repositoryLocationName": self.location, "repositoryName": "__repository__", **selector}}
        if run_config is not None:
            params["runConfigData"] = run_config
        return self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return post_graphql(self.port, query, variables)

    def wait(self, what: str, check, timeout: float = RUN_TIMEOUT_S, every: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(every)

    def runs(self, job: str) -> list[dg.DagsterRun]:
        return list(reversed(self.instance.get_runs(dg.RunsFilter(job_name=job))))

    def finished(self, job: str, count: int) -> list[dg.DagsterRun]:
        return self.wait(
            f"{count} finished run(s) of {job}",
            lambda: (lambda r: r if len(r) >= count and all(x.is_finished for x in r) else None)(self.runs(job)),
        )

    def sensor_state(self, name: str):
        from dagster._core.scheduler.instigation import InstigatorType

        states = [
            s for s in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == name
        ]
        return states[0] if states else None

    def ticks_after(self, sensor: str, after: float) -> list:
        state = self.sensor_state(sensor)
        if state is None:
            return []
        ticks = self.instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100)
        return [t for t in ticks if t.timestamp > after]
