"""A cluster's `failure:` and `logs:` sections run for every run of its steps, however it was launched.

The sections are run-status sensors, which only the daemon evaluates: `dagster job execute`, `exo run`
or a webserver without a daemon would never alert. So the process that orchestrated the run handles its
sections once the run is over: exo's executor wrapper (run_executor.py) calls `claim` before the run's
final event is stored, which tags the run `exo/sections: in-run`; when the process finishes (Python's
shutdown, before it joins threads, in the main thread) `run_pending` waits for the run's final status
and runs the failure job (run failed, at/after `from`) and the logs job (run ended) in-process, tagged
with the run they are about, exactly as the sensors would. `exo run` calls `run_pending` itself.

Why at the end of the process and not in a thread beside it: Dagster is not thread-safe here (two
executions at once deadlock on the `logging` module's locks, seen as a hung `dagster job execute`).
So only processes that end with their run claim it: those orchestrating it below one of Dagster's one-run
entry points, found on the call stack (execution/launch_paths.py: `dagster job execute`, `dg launch`,
`dagster asset materialize`, a run worker of the UI, schedules, sensors and `dagster job launch`, `exo run`);
elsewhere (a Celery worker running runs, a notebook) the daemon's sensors handle the run as before.
`EXO_SECTIONS_IN_RUN=1|0` forces either way.

The sensors skip runs carrying the tag, so a section never fires twice; they remain the backstop for
runs whose process died or that were failed from outside (a run worker killed, a run failed by
Dagster's run monitoring), which never reach `claim`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import dagster as dg

from exo_dagster import keys
from exo_dagster.execution import launch_paths
from exo_dagster.python_private import call_before_thread_shutdown
from exo_dagster.sections import failure
from exo_dagster.sections import logs as log_forwarding
from exo_dagster.sections.job import HANDLED_IN_RUN
from exo_dagster.spec.ir import Cluster

if TYPE_CHECKING:
    from exo_dagster.dagster_private import InstanceRef

HANDLED_TAG = keys.SECTIONS_TAG  # HANDLED_IN_RUN: the run ran its own sections (the sensors skip it)
FORCE_ENV = "EXO_SECTIONS_IN_RUN"
FINAL_STATUS_TIMEOUT_S = 90.0  # the final event follows the executor within a second; never hold a process long
POLL_S = 0.2

_pending: list[tuple[InstanceRef, str, list[Cluster]]] = []
_hooked = False
_log = logging.getLogger("exo_dagster.sections.run_end")


def has_sections(cluster: Cluster) -> bool:
    return bool(cluster.failure_steps or cluster.logs_steps)


def one_shot_process() -> bool:
    """Whether this process ends with the run it orchestrates (one of Dagster's one-run entry points is on the
    stack), so it can run the sections then."""
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "0", "false", "no"):
        return forced in ("1", "true", "yes")
    return launch_paths.one_run_entry_point() is not None


def claim(instance: dg.DagsterInstance, run_id: str, clusters: Iterable[Cluster]) -> bool:
    """Tag the run as handling its own sections and have them run when this process ends. Nothing for an
    in-memory instance, clusters without sections, or a process that does not end with its run."""
    global _hooked
    clusters = [c for c in clusters if has_sections(c)]
    if not clusters or not instance.is_persistent or not one_shot_process():
        return False
    if not _hooked:
        try:
            call_before_thread_shutdown(run_pending)  # main thread, before threads are joined: python_private.py
        except RuntimeError:  # already shutting down: leave it to the sensors
            return False
        _hooked = True
    instance.add_run_tags(run_id, {HANDLED_TAG: HANDLED_IN_RUN})
    _pending.append((instance.get_ref(), run_id, clusters))
    return True


def run_pending() -> None:
    """Run the sections of every run this process claimed (once each); never raises."""
    while _pending:
        ref, run_id, clusters = _pending.pop(0)
        try:
            with dg.DagsterInstance.from_ref(ref) as instance:
                run = _final(instance, run_id)
                if run is None:
                    _log.warning(
                        "run %s did not finish within %ss; its sections were not run", run_id, FINAL_STATUS_TIMEOUT_S
                    )
                    continue
                for cluster in clusters:
                    run_sections(instance, cluster, run)
        except Exception:  # a section must never turn a finished run into a crash of its process
            _log.exception("running the sections of run %s failed", run_id)


def _final(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    deadline = time.monotonic() + FINAL_STATUS_TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(POLL_S)
    return None


def run_sections(instance: dg.DagsterInstance, cluster: Cluster, run: dg.DagsterRun) -> list[dg.ExecuteInProcessResult]:
    """The failure and logs jobs this finished run calls for, executed here; what the sensors would launch."""
    from exo_dagster.storage.io_manager import ExoParquetIOManager

    results = []
    base = {keys.CLUSTER_TAG: cluster.spec.identifier}
    if cluster.failure_steps and run.status == dg.DagsterRunStatus.FAILURE:
        events = [
            r.event_log_entry.dagster_event
            for r in instance.get_records_for_run(
                run_id=run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1000
            ).records
        ]
        # an asset-selection run of the cluster's steps counts as the cluster's run (run-level failures too)
        job_name = cluster.job_name if log_forwarding.is_ours(cluster, run) else run.job_name
        picked = failure.pick_failure(cluster, job_name, [e for e in events if e is not None])
        if picked is not None:
            job = failure.build_job(cluster, keys.IO_MANAGER_KEY)
            results.append(
                job.execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    resources={keys.IO_MANAGER_KEY: ExoParquetIOManager()},
                    tags={
                        **base,
                        failure.RUN_ID_TAG: run.run_id,
                        failure.STEP_TAG: picked["step"],
                        keys.TRIGGER_TAG: "failure",
                    },
                )
            )
    if cluster.logs_steps and run.status in log_forwarding.WATCHED.values() and log_forwarding.is_ours(cluster, run):
        job = log_forwarding.build_job(cluster, keys.IO_MANAGER_KEY)
        results.append(
            job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                resources={keys.IO_MANAGER_KEY: ExoParquetIOManager()},
                tags={**base, log_forwarding.RUN_ID_TAG: run.run_id, keys.TRIGGER_TAG: "logs"},
            )
        )
    return results
