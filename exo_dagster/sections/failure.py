"""The `failure` section: a run-failure sensor that launches the cluster's failure job.

`failure: {from: labels, satellites: [...]}` runs its satellites when a step at or after `labels`
(in list order) fails; without `from`, any failure of the cluster's run counts, including a
run-level one such as the SLA's max runtime. The sensor is Dagster's `run_failure_sensor`: it is
evaluated by the daemon with its cursor in the instance, so it neither depends on the webserver
nor misses a failure across restarts, and its `run_key` (the failed run's id) makes one failure
job run per failed run.

The failure satellites run as ops of a separate job `<cluster>__on_failure`, not as assets: an
alert is a side effect of a failed run, not data, and as assets they would sit in the cluster's
lineage and freshness. Their outputs are still tables stored by the exo IO manager (per run), and
they may read the cluster's stored outputs (`${{ satellites.X.output }}`). The first one follows a
one-row table of the failure (`cluster, job, run_id, step, error, rows`); all of them can use
`${{ failure.step }}`, `${{ failure.error }}`, `${{ failure.run-id }}` and `${{ failure.rows }}`
(the failed step's per-row errors, `row N: error`, when it had any).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from exo_dagster import keys
from exo_dagster.sections.job import build_section_job, handled_in_run, view_metadata
from exo_dagster.spec.ir import Cluster, ParsedStep, step_of  # noqa: F401  (step_of re-exported)

RUN_ID_TAG = keys.FAILURE_RUN_ID_TAG
STEP_TAG = keys.FAILURE_STEP_TAG
CONTEXT_NODE = "failure_context"  # the op is `<job>__failure_context`: op names are location-wide
CONTEXT_TABLE = "_failure"
ROW_ERRORS = keys.ROW_ERRORS


def failure_job_name(cluster: Cluster) -> str:
    return f"{cluster.job_name}__on_failure"


def context_op_name(cluster: Cluster) -> str:
    return f"{cluster.job_name}__{CONTEXT_NODE}"


def definitions(cluster: Cluster, io_manager_key: str) -> tuple[list[dg.JobDefinition], list[dg.SensorDefinition]]:
    """The failure job and its sensor, or nothing when the cluster has no failure satellites."""
    if not cluster.failure_steps:
        return [], []
    failure_job = build_job(cluster, io_manager_key)
    return [failure_job], [build_sensor(cluster, failure_job)]


# -- what failed ------------------------------------------------------------------------------


def error_text(data: Any) -> str:
    """The readable root cause of a STEP_FAILURE: a Failure's description, else the user exception's
    message, under Dagster's wrappers ("Exceeded max_retries of 3", "Error occurred while executing...")."""
    user = getattr(data, "user_failure_data", None)
    if user is not None and user.description:
        return user.description
    error = getattr(data, "error", None)
    return root_message(error) if error is not None else "step failed"


def root_message(error: Any) -> str:
    """The innermost message of a SerializableErrorInfo that is not one of Dagster's wrappers."""
    while error.cause is not None and (_is_wrapper(error)):
        error = error.cause
    return error.message.strip()


def _is_wrapper(error: Any) -> bool:
    return (
        (error.cls_name or "").startswith("Dagster")
        or error.message.startswith("Exceeded max_retries")
        or error.cls_name is None
    )


SLA_MARKERS = ("SLA exceeded", "Exceeded maximum runtime", "exceeding maximum runtime")


def run_failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run-level failure's own error (e.g. "SLA exceeded: ..."), else the RUN_FAILURE message."""
    records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    if not records:
        return ""
    event = records[-1].event_log_entry.dagster_event
    if event is None:  # a RUN_FAILURE record always carries its event; nothing to read otherwise
        return ""
    error = getattr(event.event_specific_data, "error", None)
    text = root_message(error) if error is not None else (event.message or "")
    if "SLA exceeded" in text:  # exo's guard (run_executor.SlaExceeded)
        return text[text.index("SLA exceeded") :]
    # Dagster's run monitoring: "Exceeded maximum runtime of N seconds."
    if any(marker in text for marker in SLA_MARKERS):
        return f"SLA exceeded: {text}"
    return text


def row_errors(data: Any) -> list[str]:
    user = getattr(data, "user_failure_data", None)
    entry = (user.metadata or {}).get(ROW_ERRORS) if user is not None else None
    text = getattr(entry, "value", entry)
    return [line for line in str(text).splitlines() if line.strip()] if text else []


def pick_failure(cluster: Cluster, job_name: str, events: list[dg.DagsterEvent]) -> dict | None:
    """The failure the section reacts to: the earliest failed step at/after `from`, or (without
    `from`) a run-level failure of the cluster's own job. None when it is not ours to handle."""
    start = cluster.step(cluster.spec.failure.from_).index if cluster.spec.failure and cluster.spec.failure.from_ else 0
    ours = [(step, e) for e in events if (step := step_of(cluster, e.step_key)) is not None]
    eligible = sorted(((step, e) for step, e in ours if step.index >= start), key=lambda pair: pair[0].index)
    if eligible:
        step, event = eligible[0]
        return {"step": step.identifier, "step_key": event.step_key}
    if not ours and job_name == cluster.job_name and start == 0:
        return {"step": "", "step_key": None}
    return None


def build_sensor(cluster: Cluster, failure_job: dg.JobDefinition) -> dg.SensorDefinition:
    section = cluster.spec.failure
    where = f"a step from `{section.from_}` onward" if section and section.from_ else "a run"

    # No monitored_jobs: every job of this code location, so runs launched from the UI's
    # "Materialize" (Dagster's implicit asset job) count too; steps not ours are ignored.
    @dg.run_failure_sensor(
        name=f"{cluster.job_name}__on_failure",
        request_job=failure_job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"failure section of cluster/{cluster.spec.identifier}: when {where} fails, runs {failure_job.name}"
        ),
        tags={keys.CLUSTER_TAG: cluster.spec.identifier, keys.TRIGGER_TAG: "failure"},
    )
    def _on_failure(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        if handled_in_run(run):  # the run ran this section itself (run_end.py)
            return dg.SkipReason(f"run {run.run_id} ran its failure section itself")
        picked = pick_failure(cluster, run.job_name, list(context.get_step_failure_events()))
        if picked is None:
            return dg.SkipReason(f"run {run.run_id} of {run.job_name} failed outside the failure section's steps")
        return dg.RunRequest(
            run_key=f"failure:{run.run_id}",
            tags={keys.CLUSTER_TAG: cluster.spec.identifier, RUN_ID_TAG: run.run_id, STEP_TAG: picked["step"]},
        )

    return _on_failure


def failure_fields(instance: dg.DagsterInstance, cluster: Cluster, run_id: str, step: str) -> dict[str, Any]:
    """`failure.*` for a failed run, read back from the instance's event log."""
    if instance.get_run_by_id(run_id) is None:
        raise dg.Failure(description=f"failed run {run_id} is not in this Dagster instance", allow_retries=False)
    error, rows = "", []
    run_error = run_failure_text(instance, run_id)
    if step:
        records = instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            failed = step_of(cluster, event.step_key)
            if failed is not None and failed.identifier == step:
                error, rows = error_text(event.step_failure_data), row_errors(event.step_failure_data)
                error = f"{failed.spec.name} (`{failed.identifier}`): {error}"
                break
    if run_error.startswith("SLA exceeded"):  # the step failed because the run was stopped: the SLA is the cause
        error = run_error + (f" (while step `{step}` ran)" if step else "")
    if not error:
        error = run_error
    return {"step": step, "error": error or "run failed", "run-id": run_id, "rows": rows}


# -- the failure job --------------------------------------------------------------------------


def _fields_from_tags(context, cluster: Cluster) -> dict[str, Any]:
    tags = context.run.tags
    if RUN_ID_TAG not in tags:
        raise dg.Failure(
            description=f"this job runs from its sensor; launch it with tag {RUN_ID_TAG}=<failed run id>",
            allow_retries=False,
        )
    return failure_fields(context.instance, cluster, tags[RUN_ID_TAG], tags.get(STEP_TAG, ""))


def _context_op(cluster: Cluster, io_manager_key: str) -> dg.OpDefinition:
    @dg.op(
        name=context_op_name(cluster),
        out=dg.Out(io_manager_key=io_manager_key, metadata=view_metadata(cluster, "on_failure", "failure")),
        description="The failed run's context as a one-row table (cluster, job, run_id, step, error, rows).",
    )
    def _failure_context(context) -> pl.DataFrame:
        fields = _fields_from_tags(context, cluster)
        context.log.info(
            f"cluster/{cluster.spec.identifier} failed in run {fields['run-id']}"
            + (f" at step `{fields['step']}`" if fields["step"] else "")
        )
        return pl.DataFrame(
            [
                {
                    "cluster": cluster.spec.identifier,
                    "job": cluster.job_name,
                    "run_id": fields["run-id"],
                    "step": fields["step"],
                    "error": fields["error"],
                    "rows": fields["rows"],
                }
            ],
            schema={
                "cluster": pl.Utf8,
                "job": pl.Utf8,
                "run_id": pl.Utf8,
                "step": pl.Utf8,
                "error": pl.Utf8,
                "rows": pl.List(pl.Utf8),
            },
        )

    return _failure_context


def build_job(cluster: Cluster, io_manager_key: str) -> dg.JobDefinition:
    return build_section_job(
        cluster,
        name=failure_job_name(cluster),
        section="on_failure",
        steps=cluster.failure_steps,
        first=_context_op(cluster, io_manager_key),
        first_table=CONTEXT_TABLE,
        io_manager_key=io_manager_key,
        roots=lambda context: {"failure": _fields_from_tags(context, cluster)},
        description=f"failure satellites of cluster/{cluster.spec.identifier}",
        about_run_tag=RUN_ID_TAG,
    )
