"""A cluster's `failure:` and `logs:` sections run for every run of its steps, however it was launched.

The sections are run-status sensors, which only the daemon evaluates: `dagster job execute`, `exo run`
or a webserver without a daemon would never alert. So the run itself handles its sections when its
steps are done: exo's executor wrapper (run_executor.py) calls `claim` before the run's final event
is stored, which tags the run `exo/sections: in-run` and starts a watcher thread; the thread waits
for the run's final status and runs the failure job (run failed, at/after `from`) and the logs job
(run ended) in this process, tagged with the run they are about, exactly as the sensors would.

The sensors skip runs carrying the tag, so a section never fires twice; they remain the backstop for
runs whose process died or that were failed from outside (a run worker killed, a run failed by
Dagster's run monitoring), which never reach `claim`. The thread is not a daemon thread: the process
(`dagster job execute`, the run worker) waits for it before exiting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

import dagster as dg

from . import failure, log_forwarding
from .parser import Cluster

HANDLED_TAG = "exo/sections"
HANDLED_IN_RUN = "in-run"
FINAL_STATUS_TIMEOUT_S = 90.0  # the final event follows the executor within a second; never hold a process long
POLL_S = 0.2

_pending: list[threading.Thread] = []
_log = logging.getLogger("exo_dagster.run_end")


def has_sections(cluster: Cluster) -> bool:
    return bool(cluster.failure_steps or cluster.logs_steps)


def handled_in_run(run: dg.DagsterRun) -> bool:
    """True when the run handles its own sections (the sensors then skip it)."""
    return run.tags.get(HANDLED_TAG) == HANDLED_IN_RUN


def claim(instance: dg.DagsterInstance, run_id: str, clusters: Iterable[Cluster]) -> threading.Thread | None:
    """Mark the run as handling its sections and start the thread that does it once the run has ended.
    Nothing for an in-memory instance (no other process could read it back) or clusters without sections."""
    clusters = [c for c in clusters if has_sections(c)]
    if not clusters or not instance.is_persistent:
        return None
    instance.add_run_tags(run_id, {HANDLED_TAG: HANDLED_IN_RUN})
    _warm_up()
    thread = threading.Thread(target=_handle, args=(instance.get_ref(), run_id, clusters),
                              name=f"exo-sections-{run_id[:8]}", daemon=False)
    thread.start()
    _pending.append(thread)
    return thread


def _warm_up() -> None:
    """Build the IO manager once here, in the orchestrating thread, before the sections' thread does.

    On exo's local executor the orchestrator never built it during the run; the thread and the main
    thread (`dagster job execute` rebuilds the run's resources for its result) would otherwise both
    do their first UPath/fsspec set-up at once, and those lazy imports and registries can deadlock
    across threads (seen as a hung `exo run`)."""
    from .io_manager import ExoParquetIOManager

    try:
        ExoParquetIOManager().create_io_manager(None)
    except Exception:  # a storage problem shows up, located, when the section job itself runs
        pass


def wait_pending(timeout: float | None = None) -> None:
    """Block until every section started by this process is done (`exo run` waits before it exits)."""
    for thread in list(_pending):
        thread.join(timeout)
        if not thread.is_alive():
            _pending.remove(thread)


def _handle(ref, run_id: str, clusters: list[Cluster]) -> None:
    try:
        with dg.DagsterInstance.from_ref(ref) as instance:
            run = _final(instance, run_id)
            if run is None:
                _log.warning("run %s did not finish within %ss; its sections were not run", run_id, FINAL_STATUS_TIMEOUT_S)
                return
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
    from .compiler import IO_MANAGER_KEY
    from .io_manager import ExoParquetIOManager

    results = []
    base = {"exo/cluster": cluster.spec.identifier}
    if cluster.failure_steps and run.status == dg.DagsterRunStatus.FAILURE:
        events = [r.event_log_entry.dagster_event for r in instance.get_records_for_run(
            run_id=run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1000).records]
        # an asset-selection run of the cluster's steps counts as the cluster's run (run-level failures too)
        job_name = cluster.job_name if log_forwarding.is_ours(cluster, run) else run.job_name
        picked = failure.pick_failure(cluster, job_name, [e for e in events if e is not None])
        if picked is not None:
            job = failure.build_job(cluster, IO_MANAGER_KEY)
            results.append(job.execute_in_process(
                instance=instance, raise_on_error=False, resources={IO_MANAGER_KEY: ExoParquetIOManager()},
                tags={**base, failure.RUN_ID_TAG: run.run_id, failure.STEP_TAG: picked["step"], "exo/trigger": "failure"}))
    if cluster.logs_steps and run.status in log_forwarding.WATCHED.values() and log_forwarding.is_ours(cluster, run):
        job = log_forwarding.build_job(cluster, IO_MANAGER_KEY)
        results.append(job.execute_in_process(
            instance=instance, raise_on_error=False, resources={IO_MANAGER_KEY: ExoParquetIOManager()},
            tags={**base, log_forwarding.RUN_ID_TAG: run.run_id, "exo/trigger": "logs"}))
    return results
