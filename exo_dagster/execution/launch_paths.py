"""Which launch path orchestrates a run in this process, read from the running call stack.

A run's `failure:`/`logs:` sections run when the process that orchestrated it ends (sections/run_end.py), so
exo must know whether this process ends with its run. The command line cannot say: `dg launch` runs the job
inside the `dg` process, a run worker that a code server spawns carries the code server's argv, and console
scripts, `python -m` and `uv run` all name themselves differently. The stack can: a run orchestrated here runs
below one of Dagster's (or exo's) one-run entry points, which return to a process that then exits. A run
below none of them (a Celery worker or any host running many runs, a notebook, a test) is left to the daemon.

The same entry points bring Dagster's refusal of `--partition-range` for exo's jobs (`dg launch`, `dagster asset
materialize`): exo runs one partition per run, so `explain_partition_ranges` turns that refusal into a one-line
error saying what to run instead.
"""

from __future__ import annotations

import os
import sys
from types import FrameType, TracebackType

from exo_dagster.execution.cluster_executor import cluster_of

# (module, function) -> the launch path; the outermost one found on the stack names it (`dg launch` calls
# `dagster job execute`'s function)
ONE_RUN_ENTRY_POINTS: dict[tuple[str, str], str] = {
    ("dagster._cli.job", "job_execute_command_impl"): "dagster job execute",
    ("dagster._cli.asset", "asset_materialize_command_impl"): "dagster asset materialize",
    ("dagster_dg_cli.cli.launch", "launch_command"): "dg launch",
    ("dagster._cli.api", "execute_run_command"): "dagster api execute_run",  # container launchers' run workers
    ("dagster._cli.api", "resume_run_command"): "dagster api resume_run",
    ("dagster._grpc.impl", "start_run_in_subprocess"): "run worker",  # a code server's run (UI, schedules, sensors)
    ("exo_dagster.cli", "run"): "exo run",
}
# the paths whose run another process launched with its own instance (the webserver's, the daemon's)
LAUNCHED = ("dagster api execute_run", "dagster api resume_run", "run worker")
_REFUSAL = "BackfillPolicy.single_run() policy"  # Dagster's CLI refusing a partition range (job.py, asset.py)
_REFUSING = {"execute_execute_command", "execute_materialize_command"}

_hooked = False


def _module(frame: FrameType) -> str:
    spec = frame.f_globals.get("__spec__")  # `python -m exo_dagster.cli`: __name__ is __main__, the spec is not
    return getattr(spec, "name", None) or frame.f_globals.get("__name__", "")


def one_run_entry_point(frame: FrameType | None = None) -> str | None:
    """The launch path orchestrating in this thread (`dg launch`, `run worker`, ...), or None below none of them."""
    found = None
    frame = frame or sys._getframe(1)
    while frame is not None:
        found = ONE_RUN_ENTRY_POINTS.get((_module(frame), frame.f_code.co_name), found)
        frame = frame.f_back
    return found


def launched_by_another_process() -> bool:
    """True in a run worker: the run's instance is the one the launching webserver or daemon opened."""
    return one_run_entry_point(sys._getframe(1)) in LAUNCHED


# -- `--partition-range` ----------------------------------------------------------------------------


def explain_partition_ranges() -> None:
    """Under Dagster's one-run CLI commands, have their refusal of a partition range for exo's jobs end in a
    one-line error with what to run instead (Python's hook for uncaught exceptions; any other error passes on)."""
    global _hooked
    if _hooked or one_run_entry_point(sys._getframe(1)) not in (
        "dg launch",
        "dagster asset materialize",
        "dagster job execute",
    ):
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        message = partition_range_hint(exc, tb)
        if message is None:
            return previous(kind, exc, tb)
        print(message, file=sys.stderr, flush=True)

    sys.excepthook = hook
    _hooked = True


def partition_range_hint(exc: BaseException, tb: TracebackType | None) -> str | None:
    """The error for Dagster's refusal of `--partition-range` when it concerns exo's clusters; None otherwise."""
    if _REFUSAL not in str(exc):
        return None
    local = None
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _REFUSING:
            local = tb.tb_frame.f_locals
        tb = tb.tb_next
    if local is None or not local.get("partition_range"):
        return None
    clusters = _clusters(local)
    if not clusters:
        return None
    span = local["partition_range"]
    names = ", ".join(f"cluster/{c.spec.identifier}" for c in clusters)
    fixes = [f"`exo run {_shown(c.source_path)} --partition {span}`" for c in clusters if _runnable(c.source_path)]
    fixes += [f"`dg launch --job {c.job_name} --partition KEY` for each key" for c in clusters]
    return (
        f"error: --partition-range {span}: exo runs one partition per run, and Dagster's CLI runs a range only "
        f"as one run ({names}); run the partitions one run each instead: {' or '.join(fixes)}, "
        f"or a backfill from the UI (`dg dev` / `dagster dev`, then Materialize -> partitions)"
    )


def _clusters(local: dict) -> list:
    """The exo clusters behind the refused job or asset selection (frame locals of Dagster's CLI function)."""
    cluster = cluster_of(local.get("job_def"))
    if cluster is not None:
        return [cluster]
    repo, keys = local.get("repo_def"), set(local.get("asset_keys") or ())
    if repo is None or not keys:
        return []
    found = {}
    for job in repo.get_all_jobs():
        cluster = cluster_of(job)
        if cluster is not None and any(list(k.path[:-1]) == cluster.key_prefix for k in keys):
            found[cluster.job_name] = cluster
    return list(found.values())


def _runnable(path: str) -> bool:
    """A cluster file `exo run` can take (an inline cluster lives in a component's defs.yaml)."""
    return os.path.isfile(path) and os.path.basename(path) not in ("defs.yaml", "defs.yml")


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path
