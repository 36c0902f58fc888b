"""Triggers, failure handling, log forwarding, SLA and secrets with the real Dagster processes.

One temporary instance (DAGSTER_HOME with a dagster.yaml), one temporary workspace of test clusters,
`dagster-daemon run` and `dagster-webserver` on it. Runs are launched by the daemon's sensors into
run-worker subprocesses, exactly as in production; the test drops files, waits, and inspects the
instance, the loopback servers and the webserver's GraphQL answers.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.scheduler.instigation import TickStatus

from tests.definitions.dagster_stack import (  # noqa: F401  (EXE, RUN_TIMEOUT_S: test_launch_matrix imports them from here)
    DAGSTER_YAML,
    EXE,
    RUN_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    DagsterStack,
    workspace_yaml,
)
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

TOKEN = "tok-LEAK-7b3e9c1d5a2f4e6b"
PASSWORD = "pw-LEAK-0d9c8b7a6f5e"

LEAKY = '''\
"""A test satellite that tries every channel to leak its secret: log lines, metadata, output, errors."""
import polars as pl
from exo_dagster import SatelliteConfig, StepContext, satellite


class LeakyConfig(SatelliteConfig):
    header: str = ""


@satellite("satellite/test/leaky", config=LeakyConfig)
def leaky(ctx: StepContext, config: LeakyConfig):
    token, password = ctx.secrets["TOKEN"], ctx.secrets["PASSWORD"]
    ctx.log.info(f"using token {token} with header {config.header}")
    ctx.log.warning("password is %s", password)
    ctx.metadata["exo/debug"] = f"token={token} password={password}"
    return pl.DataFrame({"echo": [token], "pair": [f"{config.header}:{password}"]})
'''

DEFS = """\
import leaky  # noqa: F401  (registers satellite/test/leaky in this code location)
from exo_dagster.location import definitions_for

defs = definitions_for("clusters")
"""

WORKSPACE = workspace_yaml("exo_test")

WATCH = """\
version: 0.0.1b
cluster:
  identifier: t/watch
  trigger:
    files: {{path: "{drop}", pattern: "*.csv", interval: 1s}}
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {{folder-path: "{drop}", allowed-extensions: [csv]}}
    - name: Count
      uses: satellite/exospherehost/sql
      identifier: counted
      config: {{query: "select count(*) as n from files"}}
"""

FRAGILE = """\
version: 0.0.1b
cluster:
  identifier: t/fragile
  trigger:
    files: {{path: "{drop}", interval: 1s}}
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {{folder-path: "{drop}"}}
    - name: Check stock
      uses: satellite/exospherehost/sql
      identifier: check
      config: {{query: "select error('stock count is negative for ' || count(*) || ' file(s)') from files"}}
  failure:
    from: check
    satellites:
      - name: Page on-call
        uses: satellite/exospherehost/send-alert
        config:
          format: slack
          url: {url}/alert
          title: "${{{{ cluster.identifier }}}} failed"
          text: "step ${{{{ failure.step }}}} failed in run ${{{{ failure.run-id }}}}: ${{{{ failure.error }}}}"
"""

SECRET = """\
version: 0.0.1b
cluster:
  identifier: t/secret
  trigger:
    files: {{path: "{drop}", interval: 1s}}
  secrets:
    - TOKEN: ${{{{ env.EXO_LEAK_TOKEN }}}}
    - PASSWORD: ${{{{ env.EXO_LEAK_PASSWORD }}}}
  satellites:
    - name: Leak on purpose
      uses: satellite/test/leaky
      identifier: leaky
      config:
        header: "Bearer ${{{{ secrets.TOKEN }}}}"
        secrets:
          - TOKEN: ${{{{ secrets.TOKEN }}}}
          - PASSWORD: ${{{{ secrets.PASSWORD }}}}
    - name: Call with the token
      uses: satellite/exospherehost/call-webhook
      identifier: echo
      config:
        url: {url}/echo
        headers: {{Authorization: "Bearer ${{{{ secrets.TOKEN }}}}"}}
        body: {{ping: 1}}
  logs:
    level: DEBUG
    satellites:
      - name: Ship logs
        uses: satellite/exospherehost/forward-logs
        config: {{url: "{url}/sink"}}
"""

STALE = """\
version: 0.0.1b
cluster:
  identifier: t/stale
  sla: 6h
  satellites:
    - name: One
      uses: satellite/exospherehost/sql
      identifier: one
      config: {query: "select 1 as one"}
"""


class Stack(DagsterStack):
    """This module's clusters, test satellite and loopback server on the shared deployment."""

    def __init__(self, root: Path, server):
        super().__init__(root)
        self.server = server
        self.drops = {name: root / "drops" / name for name in ("watch", "fragile", "secret")}

    def write(self) -> None:
        self.write_home(DAGSTER_YAML)
        clusters = self.root / "clusters"
        clusters.mkdir()
        for folder in self.drops.values():
            folder.mkdir(parents=True)
        (clusters / "watch.yaml").write_text(WATCH.format(drop=self.drops["watch"]))
        (clusters / "fragile.yaml").write_text(FRAGILE.format(drop=self.drops["fragile"], url=self.server.url))
        (clusters / "secret.yaml").write_text(SECRET.format(drop=self.drops["secret"], url=self.server.url))
        (clusters / "stale.yaml").write_text(STALE)
        (self.root / "leaky.py").write_text(LEAKY)
        (self.root / "defs.py").write_text(DEFS)
        (self.root / "workspace.yaml").write_text(WORKSPACE)

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(EXO_LEAK_TOKEN=TOKEN, EXO_LEAK_PASSWORD=PASSWORD, FRESHNESS_DAEMON_INTERVAL_SECONDS="2")
        return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with http_server() as server:
        stack = Stack(tmp_path_factory.mktemp("daemon"), server)
        stack.write()
        stack.init_storage()
        try:
            stack.start_webserver_and_daemon()
            # run-status sensors start from "now" at their first tick: wait for it before anything fails
            for sensor in ("t__fragile__on_failure", "t__secret__logs_on_success"):
                stack.wait(
                    f"the first tick of {sensor}",
                    lambda s=sensor: (
                        (st := stack.sensor_state(s)) is not None and st.instigator_data and st.instigator_data.cursor
                    ),
                    timeout=STARTUP_TIMEOUT_S,
                )
            yield stack
        finally:
            stack.stop()


def _drop(folder: Path, name: str, text: str) -> None:
    tmp = folder / f".{name}.part"
    tmp.write_text(text)
    os.replace(tmp, folder / name)  # appear whole, as a real uploader should


def test_files_trigger_starts_one_run_per_batch_and_none_without_new_files(stack):
    _drop(stack.drops["watch"], "a.csv", "id\n1\n")
    _drop(stack.drops["watch"], "b.csv", "id\n2\n")
    [first] = stack.finished("t__watch", 1)
    assert first.status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    assert (
        json.loads(first.tags["exo/files"]) == ["a.csv", "b.csv"]
        and first.tags["dagster/sensor_name"] == "t__watch__files"
    )
    quiet_since = time.time()
    stack.wait(
        "a quiet tick",
        lambda: [t for t in stack.ticks_after("t__watch__files", quiet_since) if t.status == TickStatus.SKIPPED],
        every=1,
    )
    assert len(stack.runs("t__watch")) == 1  # nothing new: no run
    _drop(stack.drops["watch"], "c.csv", "id\n3\n")
    runs = stack.finished("t__watch", 2)
    assert len(runs) == 2 and json.loads(runs[1].tags["exo/files"]) == ["c.csv"]
    assert runs[1].tags["dagster/run_key"] != first.tags["dagster/run_key"]
    counted = pl.read_parquet(stack.data / "outputs" / "t__watch" / "counted.parquet")
    assert counted["n"].to_list() == [3]
    quiet_since = time.time()
    stack.wait(
        "two more quiet ticks",
        lambda: (
            len([t for t in stack.ticks_after("t__watch__files", quiet_since) if t.status == TickStatus.SKIPPED]) >= 2
        ),
        every=1,
    )
    assert len(stack.runs("t__watch")) == 2


def test_a_failing_cluster_runs_its_failure_satellites_and_the_alert_arrives(stack):
    _drop(stack.drops["fragile"], "stock.txt", "-3")
    [failed] = stack.finished("t__fragile", 1)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    [handler] = stack.finished("t__fragile__on_failure", 1)
    assert handler.status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    assert handler.tags["exo/failure-run-id"] == failed.run_id and handler.tags["exo/failure-step"] == "check"
    [alert] = stack.server.wait_for("/alert")
    body = alert.json()
    assert body["blocks"][0]["text"]["text"] == "t/fragile failed"
    text = body["blocks"][1]["text"]["text"]
    assert text.startswith(f"step check failed in run {failed.run_id}: ")
    assert "stock count is negative for 1 file(s)" in text
    quiet_since = time.time()
    stack.wait("a quiet failure-sensor tick", lambda: stack.ticks_after("t__fragile__on_failure", quiet_since))
    assert len(stack.runs("t__fragile__on_failure")) == 1 and len(stack.server.to("/alert")) == 1  # once per failed run


LAUNCH = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""


def test_a_failure_while_the_daemon_is_down_alerts_at_once_and_only_once(stack):
    """Launched from the UI (GraphQL) while the daemon is stopped: the run handles its own failure
    section when it ends (run_end.py), so the alert needs no daemon; once the daemon is back, its
    failure sensor sees the run's `exo/sections` tag and does not alert a second time."""
    before = len(stack.runs("t__fragile__on_failure"))
    alerts_before = len(stack.server.to("/alert"))
    stack.stop_one("daemon")
    launched = stack.graphql(
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": "exo_test",
                    "repositoryName": "__repository__",
                    "jobName": "t__fragile",
                }
            }
        },
    )
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["launchRun"]["run"]["runId"]
    stack.wait("the UI-launched run to fail", lambda: (r := stack.instance.get_run_by_id(run_id)) and r.is_finished)
    failed = stack.instance.get_run_by_id(run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE and failed.tags["exo/sections"] == "in-run"
    handlers = stack.finished("t__fragile__on_failure", before + 1)
    assert handlers[-1].tags["exo/failure-run-id"] == run_id and handlers[-1].status == dg.DagsterRunStatus.SUCCESS
    alerts = stack.server.wait_for("/alert", alerts_before + 1)
    assert run_id in alerts[-1].json()["blocks"][1]["text"]["text"]
    restarted = time.time()
    stack.start("daemon", ["dagster-daemon", "run", "-w", "workspace.yaml"])
    stack.wait(
        "the failure sensor to look at the backlog",
        lambda: [t for t in stack.ticks_after("t__fragile__on_failure", restarted) if t.status == TickStatus.SKIPPED],
        every=1,
    )
    time.sleep(2)
    assert (
        len(stack.runs("t__fragile__on_failure")) == before + 1 and len(stack.server.to("/alert")) == alerts_before + 1
    )


def test_sla_breach_is_visible_in_the_ui(stack):
    key = dg.AssetKey(["t", "stale", "one"])
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    stack.instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=RUNLESS_JOB_NAME,
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(asset_key=key)),
        ),
        run_id=RUNLESS_RUN_ID,
        log_level=logging.INFO,
        timestamp=time.time() - 7 * 3600,
    )  # last refreshed 7h ago
    query = """query { assetNodes(assetKeys: [{path: ["t", "stale", "one"]}]) {
        internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } }
        freshnessStatusInfo { freshnessStatus } } }"""
    node = stack.wait(
        "the freshness daemon to mark t/stale late",
        lambda: (
            lambda n: (
                n if n["freshnessStatusInfo"] and n["freshnessStatusInfo"]["freshnessStatus"] == "DEGRADED" else None
            )
        )(stack.graphql(query)["assetNodes"][0]),
        every=2,
    )
    assert node["internalFreshnessPolicy"] == {"failWindowSeconds": 6 * 3600, "warnWindowSeconds": None}


UI_QUERY = """
query Leak($runIds: [String!]) {
  runsOrError(filter: {runIds: $runIds}) { ... on Runs { results {
    runId jobName status runConfigYaml tags { key value } assetSelection { path } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    jobs { name description tags { key value }
           sensors { name description tags { key value }
                     sensorState { ticks(limit: 50) { status runKeys skipReason cursor } } }
           schedules { name } }
    assetNodes { assetKey { path } description opNames jobNames
      metadataEntries { __typename label description
        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString }
        ... on MarkdownMetadataEntry { mdStr } ... on PathMetadataEntry { path } ... on UrlMetadataEntry { url } }
      assetMaterializations(limit: 10) { runId metadataEntries { __typename label
        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString }
        ... on PathMetadataEntry { path } } } }
  } } }
}
"""

LOGS_QUERY = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId, limit: 10000) { __typename ... on EventConnection { events {
    __typename
    ... on MessageEvent { message level stepKey eventType }
    ... on ErrorEvent { error { message stack causes { message stack } } }
    ... on ExecutionStepFailureEvent { failureMetadata { metadataEntries { __typename label
        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } } } }
    ... on MaterializationEvent { metadataEntries { __typename label
        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } ... on PathMetadataEntry { path } } }
  } } }
}
"""


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _read_all(folder: Path) -> dict[Path, bytes]:
    """Every file's bytes. The running daemon checkpoints SQLite while we read, so a `-wal` file may go
    away between listing and reading: read until a whole pass sees no file vanish (its content then
    lives in the database file, which the next pass reads)."""
    for _ in range(5):
        blobs, vanished = {}, False
        for path in _files_under(folder):
            try:
                blobs[path] = path.read_bytes()
            except FileNotFoundError:
                vanished = True
        if not vanished:
            return blobs
    return blobs


def _hits(blob: bytes | str) -> list[str]:
    text = blob if isinstance(blob, str) else blob.decode("latin-1")
    return [s for s in (TOKEN, PASSWORD) if s in text]


def test_no_secret_reaches_storage_outputs_definitions_or_the_ui(stack):
    _drop(stack.drops["secret"], "go.txt", "go")
    [run] = stack.finished("t__secret", 1)
    assert run.status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    [shipped] = stack.finished("t__secret__logs", 1)
    assert shipped.status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    # the secret was really used: the endpoint got it, and the satellite's attempts to leak it were masked
    [echo] = stack.server.to("/echo")
    assert echo.headers["Authorization"] == f"Bearer {TOKEN}"
    events = "\n".join(e.to_json() for e in stack.instance.all_logs(run.run_id))
    assert "using token ******** with header Bearer ********" in events and "password is ********" in events
    sink = [line for r in stack.server.to("/sink") for line in r.lines()]
    assert any("using token ********" in line["message"] for line in sink)
    assert _hits(json.dumps(sink)) == []

    leaks: dict[str, list[str]] = {}
    # 1. the whole instance storage: run and event-log databases, tags, ticks, cursors, compute logs
    for path, blob in _read_all(stack.home).items():
        if hits := _hits(blob):
            leaks[str(path)] = hits
    # 2. every output: raw bytes and, for Parquet (compressed), every decoded value
    parquet = [p for p in _files_under(stack.data) if p.suffix == ".parquet"]
    assert any(p.name == "leaky.parquet" for p in parquet) and any(p.name == "echo.parquet" for p in parquet)
    for path in _files_under(stack.data):
        blob = path.read_bytes()
        if path.suffix == ".parquet":
            blob = blob + json.dumps(pl.read_parquet(path).to_dicts(), default=str).encode()
        if hits := _hits(blob):
            leaks[str(path)] = hits
    assert pl.read_parquet(stack.data / "outputs" / "t__secret" / "leaky.parquet")["echo"].to_list() == ["********"]
    assert "********" in pl.read_parquet(stack.data / "outputs" / "t__secret" / "echo.parquet")["response"][0]
    # 3. the compiled definitions, as the code server serializes them for the UI and the daemon
    snapshot = _repository_snapshot(stack)
    assert "t__secret" in snapshot
    if hits := _hits(snapshot):
        leaks["repository snapshot"] = hits
    # 4. the webserver's GraphQL answers: runs, tags, run config, assets, metadata, sensors, ticks, event logs
    run_ids = [r.run_id for job in ("t__secret", "t__secret__logs") for r in stack.runs(job)]
    answers = [json.dumps(stack.graphql(UI_QUERY, {"runIds": run_ids}))]
    answers += [json.dumps(stack.graphql(LOGS_QUERY, {"runId": rid})) for rid in run_ids]
    assert "password is ********" in answers[1]
    for i, answer in enumerate(answers):
        if hits := _hits(answer):
            leaks[f"graphql answer {i}"] = hits
    assert leaks == {}


def _repository_snapshot(stack) -> str:
    """Load the workspace's code in this process (with the secrets in the environment, as the code
    server has them) and serialize its repository snapshot."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster_shared.serdes import serialize_value

    from exo_dagster.location import definitions_for

    spec = importlib.util.spec_from_file_location("leaky", stack.root / "leaky.py")
    if "leaky" not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        sys.modules["leaky"] = module
        spec.loader.exec_module(module)
    saved = dict(os.environ)
    os.environ.update(EXO_LEAK_TOKEN=TOKEN, EXO_LEAK_PASSWORD=PASSWORD, EXO_DATA_DIR=str(stack.data))
    try:
        defs = definitions_for(stack.root / "clusters")
        return serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_triggers_are_listed_with_their_cluster_in_the_ui(stack):
    query = """query { repositoriesOrError { ... on RepositoryConnection { nodes { jobs {
        name sensors { name description tags { key value } } schedules { name } } } } } }"""
    jobs = {j["name"]: j for repo in stack.graphql(query)["repositoriesOrError"]["nodes"] for j in repo["jobs"]}
    watch = jobs["t__watch"]["sensors"]
    assert [s["name"] for s in watch] == ["t__watch__files"]
    assert {"key": "exo/cluster", "value": "t/watch"} in watch[0]["tags"] and "cluster/t/watch" in watch[0][
        "description"
    ]
    assert [s["name"] for s in jobs["t__fragile__on_failure"]["sensors"]] == ["t__fragile__on_failure"]
    assert [s["name"] for s in jobs["t__secret__logs"]["sensors"]] == [
        "t__secret__logs_on_failure",
        "t__secret__logs_on_success",
    ]
