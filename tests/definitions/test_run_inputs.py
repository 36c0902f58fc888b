"""Run inputs reach the steps the same way from every launch path, with the real Dagster processes.

One cluster declares inputs; it is launched from the UI's GraphQL (its job, and an asset-selection
"Materialize" of its step), by a files trigger that gives its own `inputs:`, by `dagster job execute -c`
and by `exo run --input`. Its step posts the values it resolved to a loopback server, so each launch
path is checked by what the step saw, not by what was stored in the run. Bad launches fail before any
step runs: a missing required input is refused by the launch itself, an ill-typed date fails the run
with a message naming the input.
"""

from __future__ import annotations

import json
import subprocess

import dagster as dg
import pytest

from tests.definitions.dagster_stack import EXE, serving
from tests.definitions.test_daemon import _drop
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/params
  inputs:
    via:   {{type: string, default: nobody, description: Who launched the run}}
    since: {{type: date, required: true}}
    top:   {{type: int, default: 3}}
    tier:  {{type: enum, values: [gold, silver], default: silver}}
  trigger:
    - files: {{path: "{drop}", interval: 1s}}
      inputs: {{via: files-sensor, since: 2026-11-02, tier: gold}}
  satellites:
    - name: Ping
      identifier: ping
      uses: satellite/exospherehost/call-webhook
      config:
        url: "{url}/seen"
        mode: per-batch
        body: {{via: "${{{{ inputs.via }}}}", since: "${{{{ inputs.since }}}}", top: "${{{{ inputs.top }}}}",
                tier: "${{{{ inputs.tier }}}}", text: "since ${{{{ inputs.since }}}}"}}
"""

KEY = "inputs__t__params"
JOB = "t__params"


def _config(**values) -> dict:
    return {"resources": {KEY: {"config": values}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    drop = root / "drop"
    drop.mkdir()
    (root / "run.yaml").write_text(json.dumps(_config(via="job-execute", since="2026-11-04")))
    with http_server() as server, serving(root, {"params": CLUSTER.format(drop=drop, url=server.url)}) as stack:
        stack.server, stack.drop = server, drop
        yield stack


def _cli(stack, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=stack.root, env=stack.env(), capture_output=True, text=True, timeout=600)


def test_every_launch_path_gives_the_steps_its_inputs(stack):
    launched = {
        "graphql-job": stack.launch({"jobName": JOB}, _config(via="graphql-job", since="2026-11-01", top=7)),
        "asset-selection": stack.launch(
            {"jobName": "__ASSET_JOB", "assetSelection": [{"path": ["t", "params", "ping"]}]},
            _config(via="asset-selection", since="2026-11-03", tier="gold"),
        ),
    }
    assert all(r["__typename"] == "LaunchRunSuccess" for r in launched.values()), launched
    _drop(stack.drop, "go.txt", "go")
    executed = _cli(stack, [str(EXE / "dagster"), "job", "execute", "-f", "defs.py", "-j", JOB, "-c", "run.yaml"])
    assert executed.returncode == 0, executed.stdout[-3000:] + executed.stderr[-3000:]
    ran = _cli(
        stack,
        [
            str(EXE / "exo"),
            "run",
            "clusters/params.yaml",
            "--input",
            "via=exo-run",
            "--input",
            "since=2026-11-05",
            "--input",
            "top=11",
        ],
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    seen = {body["via"]: body for body in (r.json() for r in stack.server.wait_for("/seen", 5, timeout=300))}
    # what each step resolved: the launch's values, the declared defaults for the rest, typed (top is an int)
    assert seen == {
        "graphql-job": {
            "via": "graphql-job",
            "since": "2026-11-01",
            "top": 7,
            "tier": "silver",
            "text": "since 2026-11-01",
        },
        "asset-selection": {
            "via": "asset-selection",
            "since": "2026-11-03",
            "top": 3,
            "tier": "gold",
            "text": "since 2026-11-03",
        },
        "files-sensor": {
            "via": "files-sensor",
            "since": "2026-11-02",
            "top": 3,
            "tier": "gold",
            "text": "since 2026-11-02",
        },
        "job-execute": {
            "via": "job-execute",
            "since": "2026-11-04",
            "top": 3,
            "tier": "silver",
            "text": "since 2026-11-04",
        },
        "exo-run": {"via": "exo-run", "since": "2026-11-05", "top": 11, "tier": "silver", "text": "since 2026-11-05"},
    }
    for name in ("graphql-job", "asset-selection"):
        run_id = launched[name]["run"]["runId"]
        run = stack.wait(
            f"run {run_id}",
            lambda run_id=run_id: (r := stack.instance.get_run_by_id(run_id)) and r.is_finished and r,
        )
        assert run.status == dg.DagsterRunStatus.SUCCESS


def test_a_missing_required_input_is_refused_at_launch(stack):
    refused = stack.launch({"jobName": JOB}, _config(via="no-date"))
    assert refused["__typename"] == "RunConfigValidationInvalid", refused
    assert any("since" in e["message"] for e in refused["errors"]), refused
    wrong_type = stack.launch({"jobName": JOB}, _config(since="2026-11-01", top="many"))
    assert wrong_type["__typename"] == "RunConfigValidationInvalid", wrong_type
    assert any("top" in e["message"] for e in wrong_type["errors"]), wrong_type
    not_a_choice = stack.launch({"jobName": JOB}, _config(since="2026-11-01", tier="bronze"))
    assert not_a_choice["__typename"] == "RunConfigValidationInvalid", not_a_choice
    ran = _cli(stack, [str(EXE / "exo"), "run", "clusters/params.yaml", "--input", "via=x"])
    assert ran.returncode == 1 and "input `since` is required" in ran.stderr and "Traceback" not in ran.stderr, (
        ran.stderr
    )


def test_an_ill_typed_date_fails_the_run_before_any_step(stack):
    before = len(stack.server.to("/seen"))
    launched = stack.launch({"jobName": JOB}, _config(via="bad-date", since="2026-13-40"))
    run_id = launched["run"]["runId"]
    run = stack.wait(f"run {run_id}", lambda: (r := stack.instance.get_run_by_id(run_id)) and r.is_finished and r)
    assert run.status == dg.DagsterRunStatus.FAILURE
    logs = stack.instance.all_logs(run_id)
    assert not [e for e in logs if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START]
    [failure] = [e for e in logs if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE]
    assert "input `since` must be a date written YYYY-MM-DD" in str(failure.dagster_event.event_specific_data.error)
    assert len(stack.server.to("/seen")) == before
