"""Every way to launch a cluster behaves the same: launch path x outcome, with real processes.

Launch paths: the UI's GraphQL launch of the cluster's job, an asset-selection launch (the UI's
"Materialize", Dagster's implicit `__ASSET_JOB`), a schedule tick, a files sensor, `dagster job
execute`, `dg launch` (in a dg project whose ClusterComponent loads the same clusters) and `exo run`.
Outcomes: success, a failing step, an SLA breach. One daemon and one webserver
on a temporary instance serve the whole matrix; everything is launched at once, then each cell checks
that its alert reached the loopback receiver (the logs sink for a success, the alert hook with the
cause for a failure or an SLA breach), the run's tags, and the executor that ran its steps.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tests.definitions.dagster_stack import EXE, RUN_TIMEOUT_S, STARTUP_TIMEOUT_S
from tests.definitions.test_daemon import LAUNCH, Stack, _drop
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

SLA_S = {"ok": 300, "fail": 300, "slow": 6}
EXECUTOR = {"ok": "local", "fail": "in-process", "slow": "in-process"}
PATHS = ("graphql-job", "asset-selection", "schedule", "files-sensor", "job-execute", "dg-launch", "exo-run")
OUTCOMES = ("ok", "fail", "slow")
SCHEDULE_LEAD_S = 75  # the cron clusters fire once, at a minute this far ahead (the daemon is up by then)

STEP = {
    "ok": '      uses: satellite/exospherehost/sql\n      config: {query: "select 1 as one"}',
    "fail": (
        "      uses: satellite/exospherehost/sql\n      config: {query: \"select error('failed on purpose') as x\"}"
    ),
    "slow": '      uses: satellite/exospherehost/call-webhook\n      config: {url: "SLOW/slow", mode: per-batch, '
    "body: {wait: 1}, timeout: 600}",
}

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: m/{name}
  sla: {sla}s{executor}{trigger}
  satellites:
    - name: Work
      identifier: work
{step}
  failure:
    satellites:
      - name: Alert
        uses: satellite/exospherehost/send-alert
        config:
          format: slack
          url: URL/alert
          title: "${{{{ cluster.identifier }}}} failed"
          text: "${{{{ failure.run-id }}}} :: ${{{{ failure.error }}}}"
  logs:
    level: DEBUG
    satellites:
      - name: Ship
        uses: satellite/exospherehost/forward-logs
        config: {{url: "URL/sink"}}
"""

DEFS = """\
from exo_dagster.location import definitions_for

defs = definitions_for("clusters")
"""

# a dg project (Dagster's Components layout) beside the workspace: its ClusterComponent loads ../clusters
DG_PYPROJECT = """\
[project]
name = "matrix-dg"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["exo-dagster"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "matrix_dg"
"""
DG_DEFINITIONS = """\
from pathlib import Path

from dagster import definitions, load_from_defs_folder


@definitions
def defs():
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
"""
DG_DEFS_YAML = "type: exo_dagster.ClusterComponent\nattributes:\n  path: ../../../../clusters\n"


def _name(outcome: str, path: str) -> str:
    return {"schedule": f"{outcome}-cron", "files-sensor": f"{outcome}-files"}.get(path, outcome)


def _job(outcome: str, path: str) -> str:
    return f"m__{_name(outcome, path).replace('-', '_')}"


class MatrixStack(Stack):
    def __init__(self, root: Path, server, slow, cron: str):
        super().__init__(root, server)
        self.slow, self.cron = slow, cron
        self.drops = {outcome: root / "drops" / outcome for outcome in OUTCOMES}

    def write(self) -> None:
        from tests.definitions.test_daemon import DAGSTER_YAML, WORKSPACE

        self.write_home(DAGSTER_YAML)
        clusters = self.root / "clusters"
        clusters.mkdir()
        for outcome in OUTCOMES:
            self.drops[outcome].mkdir(parents=True)
            executor = "\n  executor: local" if EXECUTOR[outcome] == "local" else ""
            step = STEP[outcome].replace("SLOW", self.slow.url)
            for path, trigger in (
                ("graphql-job", ""),
                ("schedule", f'\n  trigger: {{cron: "{self.cron}"}}'),
                ("files-sensor", f'\n  trigger: {{files: {{path: "{self.drops[outcome]}", interval: 1s}}}}'),
            ):
                text = CLUSTER.format(
                    name=_name(outcome, path), sla=SLA_S[outcome], executor=executor, trigger=trigger, step=step
                ).replace("URL", self.server.url)
                (clusters / f"{_name(outcome, path)}.yaml").write_text(text)
        (self.root / "defs.py").write_text(DEFS)
        (self.root / "workspace.yaml").write_text(WORKSPACE)
        package = self.root / "dg_project" / "matrix_dg"
        (package / "defs" / "clusters").mkdir(parents=True)
        (self.root / "dg_project" / "pyproject.toml").write_text(DG_PYPROJECT)
        for init in (package / "__init__.py", package / "defs" / "__init__.py"):
            init.write_text("")
        (package / "definitions.py").write_text(DG_DEFINITIONS)
        (package / "defs" / "clusters" / "defs.yaml").write_text(DG_DEFS_YAML)

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONFAULTHANDLER"] = "1"
        env["PYTHONPATH"] = ":".join(p for p in (str(self.root), env.get("PYTHONPATH", "")) if p)
        env.update(PATH=f"{EXE}:{env.get('PATH', '')}", VIRTUAL_ENV=str(EXE.parent), NO_COLOR="1")  # dg's environment
        return env


def _next_cron(lead_s: int) -> tuple[str, datetime]:
    at = (datetime.now(UTC) + timedelta(seconds=lead_s + 60)).replace(second=0, microsecond=0)
    return f"{at.minute} {at.hour} * * *", at


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """The stack, and every cell launched: {(path, outcome): run id or a callable finding it}."""
    cron, fires_at = _next_cron(SCHEDULE_LEAD_S)
    with http_server() as server, http_server() as slow:
        slow.delay = 600  # the slow step waits for an answer that never comes in time
        stack = MatrixStack(tmp_path_factory.mktemp("matrix"), server, slow, cron)
        stack.write()
        stack.init_storage()
        stack.start(
            "webserver", ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(stack.port)]
        )
        stack.start("daemon", ["dagster-daemon", "run", "-w", "workspace.yaml"])
        clis: list[tuple[tuple[str, str], subprocess.Popen]] = []
        try:
            stack.wait("the webserver", stack.answers, timeout=STARTUP_TIMEOUT_S)
            stack.wait("the code location", stack.location_loaded, timeout=STARTUP_TIMEOUT_S)
            runs: dict[tuple[str, str], object] = {}
            for outcome in OUTCOMES:
                job = _job(outcome, "graphql-job")
                runs[("graphql-job", outcome)] = _launch(stack, {"jobName": job})
                runs[("asset-selection", outcome)] = _launch(
                    stack, {"jobName": "__ASSET_JOB", "assetSelection": [{"path": [*job.split("__", 1), "work"]}]}
                )
                _drop(stack.drops[outcome], "go.txt", "go")
                clis.append(
                    (
                        ("job-execute", outcome),
                        _cli(
                            stack,
                            "job-execute",
                            outcome,
                            [
                                str(EXE / "dagster"),
                                "job",
                                "execute",
                                "-f",
                                "defs.py",
                                "-j",
                                job,
                                "--tags",
                                json.dumps({"matrix": "job-execute"}),
                            ],
                        ),
                    )
                )
                clis.append(
                    (
                        ("dg-launch", outcome),
                        _cli(
                            stack,
                            "dg-launch",
                            outcome,
                            [str(EXE / "dg"), "launch", "--job", job],
                            cwd=stack.root / "dg_project",
                        ),
                    )
                )
                clis.append(
                    (
                        ("exo-run", outcome),
                        _cli(stack, "exo-run", outcome, [str(EXE / "exo"), "run", f"clusters/{outcome}.yaml"]),
                    )
                )
            for (path, outcome), proc in clis:
                log = stack.root / f"{path}-{outcome}.log"
                try:
                    proc.wait(timeout=RUN_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack into the log
                    proc.wait(timeout=30)
                    raise AssertionError(f"{path} {outcome} did not end:\n{log.read_text()[-8000:]}") from None
                output = log.read_text()
                assert proc.returncode == (0 if outcome == "ok" else 1), output[-4000:]
                if path == "exo-run":
                    runs[(path, outcome)] = re.search(r"^run (\S+) of ", output, re.M).group(1)
                elif path == "dg-launch":  # `dg launch` takes no tags: its run is the one its log starts
                    job = _job(outcome, path)
                    runs[(path, outcome)] = re.search(rf" - {job} - (\S+) - \d+ - RUN_START - ", output).group(1)
                else:
                    [run] = stack.instance.get_runs(dg.RunsFilter(job_name=_job(outcome, path), tags={"matrix": path}))
                    runs[(path, outcome)] = run.run_id
            yield stack, runs, fires_at
        finally:
            for _, proc in clis:
                if proc.poll() is None:
                    proc.kill()
            stack.stop()


def _cli(stack, path: str, outcome: str, argv: list[str], cwd: Path | None = None) -> subprocess.Popen:
    with open(stack.root / f"{path}-{outcome}.log", "wb") as out:
        return subprocess.Popen(argv, cwd=cwd or stack.root, env=stack.env(), stdout=out, stderr=subprocess.STDOUT)


def _launch(stack, selector: dict) -> str:
    launched = stack.graphql(
        LAUNCH,
        {
            "params": {
                "selector": {"repositoryLocationName": "exo_test", "repositoryName": "__repository__", **selector}
            }
        },
    )
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    return launched["launchRun"]["run"]["runId"]


def _run_id(stack, runs, fires_at, path: str, outcome: str) -> str:
    if (path, outcome) in runs:
        return runs[(path, outcome)]
    job = _job(outcome, path)
    timeout = RUN_TIMEOUT_S + max(0.0, (fires_at - datetime.now(UTC)).total_seconds())
    [run] = stack.wait(f"the {path} run of {job}", lambda: stack.runs(job) or None, timeout=timeout)
    trigger = "dagster/schedule_name" if path == "schedule" else "dagster/sensor_name"
    assert run.tags[trigger] == f"{job}__{'cron' if path == 'schedule' else 'files'}"
    return run.run_id


def _step_pids(stack, run_id: str) -> tuple[int, set[int]]:
    logs = stack.instance.all_logs(run_id)
    [run_pid] = {
        e.dagster_event.pid
        for e in logs
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_START
    }
    return run_pid, {
        e.dagster_event.pid
        for e in logs
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
    }


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("path", PATHS)
def test_every_launch_path_alerts_tags_and_runs_on_the_clusters_executor(launched, path, outcome):
    stack, runs, fires_at = launched
    run_id = _run_id(stack, runs, fires_at, path, outcome)
    run = stack.wait(
        f"{path}/{outcome} run {run_id} to end",
        lambda: (r := stack.instance.get_run_by_id(run_id)) and r.is_finished and r,
    )
    record = stack.instance.get_run_record_by_id(run_id)
    cluster = f"m/{_name(outcome, path)}"
    # the run's tags: the cluster's, however launched (an asset-selection run of __ASSET_JOB too)
    assert run.job_name == ("__ASSET_JOB" if path == "asset-selection" else _job(outcome, path))
    assert run.tags["exo/cluster"] == cluster and run.tags["dagster/max_runtime"] == str(SLA_S[outcome])
    assert run.tags["exo/executor"] == EXECUTOR[outcome] and run.tags["exo/sections"] == "in-run"
    # the executor that ran the steps: exo's local one in step processes, in-process in the run's own
    run_pid, step_pids = _step_pids(stack, run_id)
    assert step_pids, "no step started"
    assert (run_pid not in step_pids) if EXECUTOR[outcome] == "local" else (step_pids == {run_pid})
    # what reached the receivers
    shipped = stack.wait(
        f"the logs of {run_id}",
        lambda: [line for r in stack.server.to("/sink") for line in r.lines() if line["run_id"] == run_id],
    )
    assert all(line["message"] for line in shipped) and {line["cluster"] for line in shipped} == {cluster}
    alerts = [r.json()["blocks"][1]["text"]["text"] for r in stack.server.to("/alert")]
    if outcome == "ok":
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert not [a for a in alerts if a.startswith(run_id)]
        return
    assert run.status == dg.DagsterRunStatus.FAILURE
    [alert] = stack.wait(
        f"the alert of {run_id}",
        lambda: [
            a for r in stack.server.to("/alert") if (a := r.json()["blocks"][1]["text"]["text"]).startswith(run_id)
        ],
    )
    if outcome == "fail":
        assert alert.startswith(f"{run_id} :: Work (`work`): ") and "failed on purpose" in alert
    else:
        assert f"{run_id} :: SLA exceeded: the run took longer than its sla of {SLA_S['slow']}s" in alert
        assert record.end_time - record.start_time < 120  # stopped at its SLA, not after the 600 s wait
