"""Which launch path orchestrates a run, read from the call stack (not argv), and `--partition-range` explained.

`dg launch` runs a job inside the `dg` process: exo found it by argv[0] before, so its runs never ran their
`failure:`/`logs:` sections. Now the stack names the path; these tests drive Dagster's real CLI functions
in-process (what `dg launch` calls) and one real `dg launch --partition-range` in a dg project.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import dagster as dg
import pytest
from dagster_shared.cli import PythonPointerOpts
from dagster_shared.record import as_dict

from exo_dagster.execution import launch_paths
from exo_dagster.sections import run_end

DAILY = """\
version: 0.0.1b
cluster:
  identifier: acme/daily
  partitions:
    daily: {start: 2026-11-01, end: "2026-11-08", timezone: UTC}
  satellites:
    - name: Day
      uses: satellite/exospherehost/sql
      identifier: day
      config: {query: "select ${{ partition.key }} as day"}
"""

EXO_DEFS = """\
from exo_dagster.location import definitions_for

defs = definitions_for({folder!r})
"""

PLAIN_DEFS = """\
import json
import dagster as dg
from exo_dagster.execution import launch_paths
from exo_dagster.sections import run_end


@dg.op
def seen():
    with open({out!r}, "w") as f:
        json.dump([launch_paths.one_run_entry_point(), run_end.one_shot_process()], f)


@dg.job(executor_def=dg.in_process_executor)
def plain():
    seen()


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01", end_date="2026-11-08"))
def other():
    return 1


defs = dg.Definitions(jobs=[plain], assets=[other])
"""


def _unwrapped(obj) -> list:
    """The functions a (click-decorated, wrapped) entry point runs: the frames the stack shows."""
    out, seen = [], set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if hasattr(item, "__code__"):
            out.append(item)
        todo += [getattr(item, "callback", None), getattr(item, "__wrapped__", None)]
    return out


@pytest.mark.parametrize("module, name", sorted(launch_paths.ONE_RUN_ENTRY_POINTS))
def test_every_entry_point_is_a_function_of_the_installed_dagster(module, name):
    """A Dagster release that renames one fails here, not silently in production (no sections, no alert)."""
    entry = getattr(importlib.import_module(module), name)
    assert name in {f.__code__.co_name for f in _unwrapped(entry)}, f"{module}.{name} moved"


def _fake(module: str, name: str, body, spec: str | None = None):
    """A function named `name` whose frames say `module`, calling `body` (how the stack sees Dagster's entry points)."""
    scope = {"__name__": module, "body": body}
    if spec:
        scope["__spec__"] = types.SimpleNamespace(name=spec)
    exec(compile(f"def {name}():\n    return body()\n", f"<{module}>", "exec"), scope)
    return scope[name]


def test_outside_any_entry_point_nothing_claims_the_run(monkeypatch):
    monkeypatch.delenv(run_end.FORCE_ENV, raising=False)
    assert launch_paths.one_run_entry_point() is None  # pytest: a host running many runs
    assert not run_end.one_shot_process()


def test_the_outermost_entry_point_names_the_path_and_python_m_counts(monkeypatch):
    monkeypatch.delenv(run_end.FORCE_ENV, raising=False)
    inner = _fake("dagster._cli.job", "job_execute_command_impl", launch_paths.one_run_entry_point)
    outer = _fake("dagster_dg_cli.cli.launch", "launch_command", inner)
    assert inner() == "dagster job execute" and outer() == "dg launch"
    exo_run = _fake("__main__", "run", run_end.one_shot_process, spec="exo_dagster.cli")  # python -m exo_dagster.cli
    assert exo_run() is True
    monkeypatch.setenv(run_end.FORCE_ENV, "0")
    assert exo_run() is False  # EXO_SECTIONS_IN_RUN still forces either way
    worker = _fake("dagster._grpc.impl", "start_run_in_subprocess", launch_paths.launched_by_another_process)
    assert (
        worker() is True
        and _fake("dagster._cli.job", "job_execute_command_impl", launch_paths.launched_by_another_process)() is False
    )


@pytest.mark.slow
def test_dagsters_job_execute_function_as_dg_launch_calls_it_is_found_from_inside_the_run(tmp_path, monkeypatch):
    from dagster._cli.job import job_execute_command_impl

    monkeypatch.delenv(run_end.FORCE_ENV, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # Dagster's temporary instance
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "seen.json"
    (tmp_path / "plain_defs.py").write_text(PLAIN_DEFS.replace("{out!r}", repr(str(out))))
    job_execute_command_impl(
        job_name="plain",
        config=(),
        config_json=None,
        tags=None,
        op_selection=None,
        partition=None,
        partition_range=None,
        repository=None,
        **as_dict(PythonPointerOpts(python_file=str(tmp_path / "plain_defs.py"))),
    )
    assert out.read_text() == '["dagster job execute", true]'


@pytest.fixture
def exo_defs(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "daily.yaml").write_text(DAILY)
    (tmp_path / "exo_defs.py").write_text(EXO_DEFS.format(folder=str(tmp_path / "clusters")))
    monkeypatch.chdir(tmp_path)
    return PythonPointerOpts(python_file=str(tmp_path / "exo_defs.py"))


def _refusal(call) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def test_dagsters_refusal_of_a_partition_range_says_what_to_run_instead(exo_defs):
    from dagster._cli.asset import execute_materialize_command
    from dagster._cli.job import execute_execute_command

    with dg.instance_for_test() as instance:
        job = _refusal(
            lambda: execute_execute_command(
                instance=instance,
                python_pointer_opts=exo_defs,
                job_name="acme__daily",
                partition_range="2026-11-02...2026-11-04",
            )
        )
        assets = _refusal(
            lambda: execute_materialize_command(
                instance=instance,
                select="acme/daily/day",
                partition=None,
                partition_range="2026-11-02...2026-11-04",
                config=(),
                config_json=None,
                python_pointer_opts=exo_defs,
            )
        )
    for refused in (job, assets):
        hint = launch_paths.partition_range_hint(refused, refused.__traceback__)
        assert hint is not None, refused
        assert hint.startswith("error: --partition-range 2026-11-02...2026-11-04: exo runs one partition per run")
        assert "`exo run clusters/daily.yaml --partition 2026-11-02...2026-11-04`" in hint
        assert "`dg launch --job acme__daily --partition KEY` for each key" in hint and "\n" not in hint


def test_a_partition_range_refused_for_other_assets_keeps_dagsters_message(tmp_path, monkeypatch):
    from dagster._cli.asset import execute_materialize_command

    (tmp_path / "plain_defs.py").write_text(PLAIN_DEFS.replace("{out!r}", repr(str(tmp_path / "x.json"))))
    with dg.instance_for_test() as instance:
        refused = _refusal(
            lambda: execute_materialize_command(
                instance=instance,
                select="other",
                partition=None,
                partition_range="2026-11-02...2026-11-04",
                config=(),
                config_json=None,
                python_pointer_opts=PythonPointerOpts(python_file=str(tmp_path / "plain_defs.py")),
            )
        )
    assert "BackfillPolicy.single_run()" in str(refused)
    assert launch_paths.partition_range_hint(refused, refused.__traceback__) is None
    assert launch_paths.partition_range_hint(ValueError("x"), None) is None


@pytest.mark.slow
def test_one_partition_runs_as_dg_launch_job_partition_runs_it(exo_defs, tmp_path):
    from dagster._cli.job import execute_execute_command

    with dg.instance_for_test() as instance:
        result = execute_execute_command(
            instance=instance, python_pointer_opts=exo_defs, job_name="acme__daily", partition="2026-11-03"
        )
        run = instance.get_run_by_id(result.run_id)
    assert result.success and run.tags["dagster/partition"] == "2026-11-03"
    assert (tmp_path / "exo" / "outputs" / "acme__daily" / "day" / "2026-11-03.parquet").exists()


@pytest.mark.slow
def test_dg_launch_partition_range_in_a_dg_project_is_a_one_line_error(tmp_path):
    from tests.exo_dagster.test_component import EXE, PACKAGE, output, project_env, write_project

    project = write_project(tmp_path)
    (project / PACKAGE / "defs" / "clusters" / "yaml" / "daily.yaml").write_text(DAILY)
    result = subprocess.run(
        [str(EXE / "dg"), "launch", "--job", "acme__daily", "--partition-range", "2026-11-02...2026-11-04"],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 1, output(result)
    assert "Traceback" not in result.stderr, output(result)
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: --partition-range")]
    assert f"`exo run {PACKAGE}/defs/clusters/yaml/daily.yaml --partition 2026-11-02...2026-11-04`" in line
    assert not (project / "exo" / "outputs" / "acme__daily").exists()  # nothing ran


def test_the_hook_is_installed_only_under_dagsters_cli_and_passes_other_errors_on(monkeypatch, capsys):
    passed = []
    monkeypatch.setattr(launch_paths, "_hooked", False)
    monkeypatch.setattr(sys, "excepthook", lambda *args: passed.append(args[1]))
    before = sys.excepthook
    launch_paths.explain_partition_ranges()  # pytest: not Dagster's CLI
    assert sys.excepthook is before
    _fake("dagster._cli.asset", "asset_materialize_command_impl", launch_paths.explain_partition_ranges)()
    hook = sys.excepthook
    assert hook is not before
    other = ValueError("something else")
    hook(ValueError, other, None)
    assert passed == [other] and capsys.readouterr().err == ""  # any other error: the hook that was there before
    monkeypatch.setattr(launch_paths, "partition_range_hint", lambda exc, tb: "error: what to run instead")
    hook(RuntimeError, RuntimeError("refused"), None)
    assert passed == [other] and capsys.readouterr().err == "error: what to run instead\n"
