"""One broken cluster file next to healthy ones, with the real dagster-daemon and webserver: the
location loads the healthy clusters, their cron ticks and files-sensor runs go on, and the broken
file is an asset in the group `exo_errors` whose description is the located error."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from tests.definitions.dagster_stack import DAGSTER_YAML, DagsterStack, workspace_yaml

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

TIMEOUT_S = 240

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
query { repositoriesOrError { ... on RepositoryConnection { nodes {
  jobs { name } schedules { name } sensors { name } } } } }
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DagsterStack(tmp_path_factory.mktemp("isolation"))
    stack.drop, clusters = stack.root / "drop", stack.root / "clusters"
    stack.write_home(DAGSTER_YAML)
    for folder in (stack.drop, clusters):
        folder.mkdir()
    (clusters / "ticker.yaml").write_text(EVERY_MINUTE)
    (clusters / "watch.yaml").write_text(WATCH.format(drop=stack.drop))
    (clusters / "broken.yaml").write_text(BROKEN)
    (stack.root / "defs.py").write_text(DEFS)
    (stack.root / "workspace.yaml").write_text(workspace_yaml("exo_isolation"))
    stack.init_storage()
    try:
        stack.start_webserver_and_daemon(timeout=TIMEOUT_S)
        yield stack
    finally:
        stack.stop()


def test_healthy_clusters_load_and_the_broken_file_is_an_error_asset(stack):
    repo = stack.graphql(JOBS)["repositoriesOrError"]["nodes"][0]
    jobs = {j["name"] for j in repo["jobs"]}
    assert {"iso__ticker", "iso__watch"} <= jobs and "iso__broken" not in jobs
    assert "iso__ticker__cron" in {s["name"] for s in repo["schedules"]}
    assert "iso__watch__files" in {s["name"] for s in repo["sensors"]}
    nodes = stack.graphql(ASSETS)["assetNodes"]
    [error] = [n for n in nodes if n["groupName"] == "exo_errors"]
    assert error["assetKey"]["path"][0] == "exo_errors" and error["assetKey"]["path"][1].startswith("broken_")
    assert "broken.yaml:6:13: error: unknown satellite" in error["description"]
    assert "get-files" in error["description"]  # the closest id is suggested
    assert (stack.root / "daemon.log").read_text().count("did not load") >= 1  # the WARNING in the location log


def test_files_sensor_and_cron_schedule_keep_running(stack):
    tmp = stack.drop / ".a.part"
    tmp.write_text("id\n1\n")
    os.replace(tmp, stack.drop / "a.csv")
    watch = stack.wait(
        "a run of iso__watch",
        lambda: [r for r in stack.instance.get_runs(dg.RunsFilter(job_name="iso__watch")) if r.is_finished],
        timeout=TIMEOUT_S,
    )
    assert watch[0].status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    ticker = stack.wait(
        "a cron run of iso__ticker",
        lambda: [r for r in stack.instance.get_runs(dg.RunsFilter(job_name="iso__ticker")) if r.is_finished],
        timeout=150,
    )
    assert ticker[0].status == dg.DagsterRunStatus.SUCCESS, stack.logs()
    assert ticker[0].tags.get("dagster/schedule_name") == "iso__ticker__cron"
