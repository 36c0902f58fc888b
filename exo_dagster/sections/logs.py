"""The `logs` section: when a run of the cluster ends, its log records go to the section's satellites.

`logs: {level: INFO, satellites: [...]}` compiles to run-status sensors (run succeeded, run failed)
that launch `<cluster>__logs` for each finished run. Its first op reads the run's event log from
the instance, keeps records at or above `level`, and hands them on as a table (timestamp, level,
message, step, event_type, run_id, cluster, job); the section's satellites follow in list order,
e.g. `forward-logs` posting them to an HTTP log sink.

Why a sensor and a job rather than a Dagster logger attached to the run: the records are read once
the run is over, from the instance, so the forwarding never slows or breaks the run, works the same
for every executor (a logger lives in each step process), retries on its own, and is not lost when
the sink is down (re-execute the logs run). Secret values are already masked in the event log
(see secrets.py), so what is forwarded is masked too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from exo_dagster import keys
from exo_dagster.sections.job import build_section_job, handled_in_run, view_metadata
from exo_dagster.spec.ir import Cluster

RUN_ID_TAG = keys.LOGS_RUN_ID_TAG
LOGS_TABLE = "_logs"
SCHEMA = {
    "timestamp": pl.Utf8,
    "level": pl.Utf8,
    "message": pl.Utf8,
    "step": pl.Utf8,
    "event_type": pl.Utf8,
    "run_id": pl.Utf8,
    "cluster": pl.Utf8,
    "job": pl.Utf8,
}
WATCHED = {"success": dg.DagsterRunStatus.SUCCESS, "failure": dg.DagsterRunStatus.FAILURE}


def logs_job_name(cluster: Cluster) -> str:
    return f"{cluster.job_name}__logs"


def definitions(cluster: Cluster, io_manager_key: str) -> tuple[list[dg.JobDefinition], list[dg.SensorDefinition]]:
    if not cluster.logs_steps:
        return [], []
    logs_job = build_job(cluster, io_manager_key)
    return [logs_job], [build_sensor(cluster, logs_job, label, status) for label, status in WATCHED.items()]


def level_number(name: str) -> int:
    return logging.getLevelName(name.upper()) if isinstance(logging.getLevelName(name.upper()), int) else logging.INFO


def is_ours(cluster: Cluster, run: dg.DagsterRun) -> bool:
    """A run of the cluster's job, or a run (e.g. the UI's Materialize) of some of its assets."""
    if run.job_name == cluster.job_name:
        return True
    step_keys = {dg.AssetKey(cluster.asset_key_path(s.identifier)) for s in cluster.steps}
    return bool(run.asset_selection and set(run.asset_selection) & step_keys)


def build_sensor(
    cluster: Cluster, logs_job: dg.JobDefinition, label: str, status: dg.DagsterRunStatus
) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name=f"{cluster.job_name}__logs_on_{label}",
        run_status=status,
        request_job=logs_job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"logs section of cluster/{cluster.spec.identifier}: forwards the logs of each run that ended in {label}"
        ),
        tags={keys.CLUSTER_TAG: cluster.spec.identifier, keys.TRIGGER_TAG: "logs"},
    )
    def _forward(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        if not is_ours(cluster, run):
            return dg.SkipReason(f"run {run.run_id} ({run.job_name}) is not a run of cluster/{cluster.spec.identifier}")
        if handled_in_run(run):  # the run forwarded its logs itself (run_end.py)
            return dg.SkipReason(f"run {run.run_id} forwarded its logs itself")
        return dg.RunRequest(
            run_key=f"logs:{run.run_id}", tags={keys.CLUSTER_TAG: cluster.spec.identifier, RUN_ID_TAG: run.run_id}
        )

    return _forward


def entry_message(entry: Any) -> str:
    """The text of one event-log record: the log line, else the event's message (with the error of a
    failure), else what happened, so no row is blank."""
    from exo_dagster.sections.failure import error_text, root_message

    event = entry.dagster_event
    text = (entry.user_message or "").strip()
    if event is None:
        return text or (entry.message or "").strip()
    text = text or (event.message or "").strip()
    data = event.event_specific_data
    if event.event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY):
        error = (
            error_text(data)
            if event.event_type == dg.DagsterEventType.STEP_FAILURE
            else (root_message(data.error) if getattr(data, "error", None) is not None else "")
        )
        if error and error not in text:
            text = f"{text} {error}".strip()
    elif getattr(data, "error", None) is not None:
        error = root_message(data.error)
        if error not in text:
            text = f"{text} {error}".strip()
    return text or event.event_type.value.replace("_", " ").lower() + (f" ({entry.step_key})" if entry.step_key else "")


def log_records(instance: dg.DagsterInstance, cluster: Cluster, run_id: str, level: str) -> pl.DataFrame:
    """The run's event log at or above `level`, one row per record, oldest first."""
    from exo_dagster.runtime.secrets import known_values, mask

    floor = level_number(level)
    hidden = known_values(cluster.secrets)
    rows = []
    for entry in instance.all_logs(run_id):
        entry_level = entry.level if isinstance(entry.level, int) else level_number(entry.level)
        if entry_level < floor:
            continue
        event = entry.dagster_event
        message = mask(entry_message(entry), hidden)
        rows.append(
            {
                "timestamp": datetime.fromtimestamp(entry.timestamp, UTC).isoformat(),
                "level": logging.getLevelName(entry.level),
                "message": message,
                "step": entry.step_key,
                # RUN_START, not the legacy PIPELINE_START
                "event_type": event.event_type.name if event is not None else None,
                "run_id": run_id,
                "cluster": cluster.spec.identifier,
                "job": entry.job_name,
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA)


def _records_op(cluster: Cluster, io_manager_key: str) -> dg.OpDefinition:
    level = cluster.spec.logs.level if cluster.spec.logs else "INFO"

    @dg.op(
        name=f"{cluster.job_name}__run_logs",
        out=dg.Out(io_manager_key=io_manager_key, metadata=view_metadata(cluster, "logs", "run_logs")),
        description=f"The finished run's log records at {level} and above, as a table.",
    )
    def _run_logs(context) -> pl.DataFrame:
        run_id = context.run.tags.get(RUN_ID_TAG)
        if not run_id:
            raise dg.Failure(
                description=f"this job runs from its sensor; launch it with tag {RUN_ID_TAG}=<run id>",
                allow_retries=False,
            )
        table = log_records(context.instance, cluster, run_id, level)
        context.log.info(f"{table.height} log record(s) of run {run_id} at {level} and above")
        return table

    return _run_logs


def build_job(cluster: Cluster, io_manager_key: str) -> dg.JobDefinition:
    return build_section_job(
        cluster,
        name=logs_job_name(cluster),
        section="logs",
        steps=cluster.logs_steps,
        first=_records_op(cluster, io_manager_key),
        first_table=LOGS_TABLE,
        io_manager_key=io_manager_key,
        description=f"log satellites of cluster/{cluster.spec.identifier}",
        about_run_tag=RUN_ID_TAG,
    )
