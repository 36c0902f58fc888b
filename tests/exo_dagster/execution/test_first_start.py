"""The first process on a fresh DAGSTER_HOME: exo's instance defaults in effect, or a loud warning with the fix.

`exo init` and `exo run` write exo's dagster.yaml before anything opens the home, so they run on it. Dagster's
long-lived processes (`dagster dev`, `dg dev`, the webserver, the daemon) read dagster.yaml when they start,
before any code location loads, and Dagster gives exo no hook in between: the code location that writes the
file says so (WARNING, naming the file, saying to restart), and so does every run such a process launches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time

import dagster as dg
import pytest

from exo_dagster.execution import launch_paths
from exo_dagster.execution.instance_defaults import DEFAULT_DAGSTER_YAML, stale_instance
from exo_dagster.execution.instance_home import prepare
from exo_dagster.execution.run_queue import ExoRunCoordinator

MONITORING = "MONITORING"  # dagster._daemon.daemon.MonitoringDaemon.daemon_type()

QUICK = """\
version: 0.0.1b
cluster:
  identifier: acme/quick
  executor: in-process
  satellites:
    - name: One
      uses: satellite/exospherehost/sql
      identifier: one
      config: {query: "select 1 as one"}
"""


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "exo_dagster.instance"]


def test_exo_run_and_exo_init_write_the_defaults_before_the_home_is_opened_and_run_on_them(tmp_path, caplog):
    home = tmp_path / "home"
    home.mkdir()
    prepare(home)  # what `exo run` and `exo init` call before any Dagster process opens the home
    assert (home / "dagster.yaml").read_text() == DEFAULT_DAGSTER_YAML and not _warnings(caplog)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled and isinstance(instance.run_coordinator, ExoRunCoordinator)
        assert MONITORING in instance.get_required_daemon_types()  # what a daemon started now runs
        assert stale_instance(instance) is None


def test_a_code_location_that_writes_the_defaults_warns_once_naming_the_file_and_the_fix(tmp_path, caplog):
    home = tmp_path / "home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as first:  # the daemon/webserver, opened on an empty home
        assert not first.run_monitoring_enabled and MONITORING not in first.get_required_daemon_types()
        prepare(home, from_location=True)  # then its code location loads
        [warning] = _warnings(caplog)
        assert warning.startswith(f"{home / 'dagster.yaml'}: exo wrote its instance defaults here")
        fix = "restart it to pick them up (`dagster dev` / `dg dev`, or `dagster-webserver` and `dagster-daemon run`)"
        assert fix in warning
        late = stale_instance(first)
        assert late is not None and late.startswith(f"{home / 'dagster.yaml'}: the webserver or daemon that launched")
        assert "run monitoring on" in late
        assert "run coordinator ExoRunCoordinator (it runs QueuedRunCoordinator)" in late
    caplog.clear()
    prepare(home, from_location=True)  # the file exists: nothing to say
    assert not _warnings(caplog)
    with dg.DagsterInstance.from_config(str(home)) as second:  # the next start runs on it
        assert MONITORING in second.get_required_daemon_types() and stale_instance(second) is None


def test_a_dagster_yaml_that_exo_did_not_write_is_never_judged(tmp_path):
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        (tmp_path / "dagster.yaml").write_text("run_monitoring:\n  enabled: true\n")
        assert stale_instance(instance) is None
    assert stale_instance(dg.DagsterInstance.ephemeral()) is None


@pytest.mark.slow
def test_a_run_launched_by_a_process_that_predates_the_file_warns_in_its_own_log(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    (tmp_path / "quick.yaml").write_text(QUICK)
    job = dg.build_reconstructable_job(
        "exo_dagster.cli", "cluster_job", reconstructable_args=(str(tmp_path / "quick.yaml"),)
    )
    home = tmp_path / "home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as launcher:  # opened before exo's file existed
        prepare(home)

        def run():
            return dg.execute_job(job, instance=launcher, raise_on_error=False)

        scope = {"__name__": "dagster._grpc.impl", "run": run}  # a run worker's frame, as the code server starts it
        exec("def start_run_in_subprocess():\n    return run()\n", scope)
        launched, here = scope["start_run_in_subprocess"](), run()

        def warned(result) -> list[str]:
            return [
                e.message
                for e in launcher.all_logs(result.run_id)
                if e.level == logging.WARNING and "opened DAGSTER_HOME before exo wrote" in (e.message or "")
            ]

        assert launched.success and here.success
        [message] = warned(launched)
        assert message.startswith(f"{home / 'dagster.yaml'}: the webserver or daemon that launched this run")
        assert warned(here) == []  # an in-process run (`dagster job execute`, `dg launch`) needs no queue or monitor
    assert launch_paths.one_run_entry_point() is None


@pytest.mark.slow
def test_a_first_daemon_on_a_fresh_home_prints_the_warning_and_the_next_start_has_the_defaults(tmp_path):
    """The real thing, once: `dagster-daemon run` on a dg project with a ClusterComponent and an empty home."""
    from tests.exo_dagster.test_component import EXE, PACKAGE, project_env, write_project

    project = write_project(tmp_path / "project")
    home = tmp_path / "fresh"
    home.mkdir()
    env = {**project_env(project), "DAGSTER_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([str(project), env["PYTHONPATH"]])
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(EXE / "dagster-daemon"), "run", "-m", f"{PACKAGE}.definitions"],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "Instance is configured with the following daemons" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-5000:]
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    [daemons] = [line for line in text.splitlines() if "Instance is configured with the following daemons" in line]
    warning = f"{home / 'dagster.yaml'}: exo wrote its instance defaults here"
    assert warning in text and text.index(warning) < text.index(daemons), text[-5000:]
    assert "MonitoringDaemon" not in daemons  # read before the location wrote the file: hence the warning
    with dg.DagsterInstance.from_config(str(home)) as restarted:  # what the daemon's next start runs
        assert MONITORING in restarted.get_required_daemon_types()
        assert isinstance(restarted.run_coordinator, ExoRunCoordinator)
