"""A cluster's `trigger` (one, or a list) -> Dagster schedules and sensors that launch its job.

Each trigger's `inputs:` are the run inputs of the runs it launches (compile/inputs_resource.py).
The first trigger of a kind is named `<job>__cron` / `__files` / `__after`, later ones `__cron_2`, ...

- `cron`  -> a ScheduleDefinition in the trigger's timezone.
- `files` -> a sensor that looks at a folder every `interval`; files that are new or whose content
  changed (and are older than `min-age`, i.e. no longer being written) form one batch and one run.
  The cursor remembers each file's size, mtime and sha256, so unchanged files are not re-hashed;
  the `run_key` is a hash of the batch's (path, sha256) pairs, so Dagster never launches the same
  batch twice, even if the cursor were lost.
- `after` -> a multi-asset sensor on the other cluster's asset group: once a run that materialized
  its assets has succeeded, this cluster runs once (run_key from the consumed materializations).
- none -> nothing here: launched from the UI, the GraphQL API or `dagster job launch`/`exo run`.

Everything is built from the spec alone (no I/O at compile time); the sensors touch the filesystem
and the instance only when the daemon evaluates them. Each carries the `exo/cluster` tag and names
its cluster in its description, and targets the cluster's job, so the UI lists it on the job's page.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import dagster as dg

from exo_dagster import keys
from exo_dagster.compile import inputs_resource
from exo_dagster.sdk import hashing, paths
from exo_dagster.spec.ir import Cluster, asset_name
from exo_dagster.spec.models import CLUSTER_ID, FilesTrigger, Trigger, duration_seconds
from exo_dagster.spec.untrusted_text import markdown_text

FILES_TAG_LIMIT = 4000  # longest `exo/files` tag value; longer batches keep only the count and hash
HASH_CHUNK = 1 << 20


def definitions(cluster: Cluster, job: Any) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    """The schedules and sensors for `cluster.spec.trigger` (one or a list), targeting `job`."""
    schedules, sensors = [], []
    seen: dict[str, int] = {}
    for trigger in cluster.spec.triggers:
        kind = trigger.kind
        if kind is None:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        name = f"{cluster.job_name}__{kind}" + (f"_{seen[kind]}" if seen[kind] > 1 else "")
        # each builder takes its kind's own field, known to be set (Trigger has exactly one kind)
        if trigger.cron is not None:
            schedules.append(cron_schedule(cluster, job, trigger, trigger.cron, name))
        elif trigger.files is not None:
            sensors.append(files_sensor(cluster, job, trigger, trigger.files, name))
        elif trigger.after is not None:
            sensors.append(after_sensor(cluster, job, trigger, trigger.after, name))
    return schedules, sensors


def trigger_run_config(cluster: Cluster, trigger: Trigger) -> dict[str, Any]:
    """The run config of the runs a trigger launches: its `inputs:` (defaults fill the rest)."""
    return inputs_resource.run_config(cluster, trigger.inputs)


def _tags(cluster: Cluster, kind: str) -> dict[str, str]:
    return {keys.CLUSTER_TAG: cluster.spec.identifier, keys.TRIGGER_TAG: kind}


def cron_schedule(cluster: Cluster, job: Any, trigger: Trigger, cron: str, name: str) -> dg.ScheduleDefinition:
    spec = cluster.spec
    given = ", ".join(f"{k}={v}" for k, v in trigger.inputs.items())
    description = f"trigger.cron of cluster/{spec.identifier}" + (
        f" with inputs {markdown_text(given)}" if given else ""
    )
    if spec.partitions is not None:  # a run per tick for the tick's partition (spec_dagster/partitions.py)
        from exo_dagster.spec_dagster.partitions import partitioned_schedule

        return partitioned_schedule(
            cluster,
            job,
            name=name,
            cron=cron,
            timezone=trigger.timezone,
            run_config=trigger_run_config(cluster, trigger) or None,
            tags={keys.TRIGGER_TAG: "cron"},
            description=description,
        )
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=trigger.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
        tags={keys.TRIGGER_TAG: "cron"},
        run_config=trigger_run_config(cluster, trigger) or None,
    )


# -- files --------------------------------------------------------------------------------------


def _matches(folder: Path, pattern: str) -> list[Path]:
    """Files under `folder` matching `pattern` (a glob relative to the folder; `**/` descends)."""
    if not folder.is_dir():
        return []
    found = (
        folder.glob(pattern)
        if ("/" in pattern or "**" in pattern)
        else (p for p in folder.iterdir() if fnmatch.fnmatchcase(p.name, pattern))
    )
    return sorted(p for p in found if p.is_file() and not p.name.startswith("."))


def scan(
    folder: str | os.PathLike, pattern: str, min_age_s: float, seen: dict[str, list], now: float | None = None
) -> tuple[dict[str, str], dict[str, list]]:
    """Compare the folder with the cursor `seen` ({relative path: [size, mtime_ns, sha256]}).

    Returns (batch, state): `batch` holds the new or changed files that are old enough, as
    {relative path: sha256}; `state` is the next cursor (files too young keep their old entry,
    so they show up once they settle; deleted files are forgotten).
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    batch: dict[str, str] = {}
    state: dict[str, list] = {}
    for file in _matches(folder, pattern):
        rel = file.relative_to(folder).as_posix()
        try:
            stat = file.stat()
        except FileNotFoundError:
            continue  # removed between listing and stat
        previous = seen.get(rel)
        if now - stat.st_mtime < min_age_s:
            if previous is not None:
                state[rel] = previous
            continue
        if previous is not None and previous[0] == stat.st_size and previous[1] == stat.st_mtime_ns:
            state[rel] = previous
            continue
        try:
            digest = hashing.sha256_file(file, chunk=HASH_CHUNK)
        except FileNotFoundError:
            continue
        state[rel] = [stat.st_size, stat.st_mtime_ns, digest]
        if previous is None or previous[2] != digest:
            batch[rel] = digest
    return batch, state


def batch_key(batch: dict[str, str]) -> str:
    """The run_key of a batch: a hash of its sorted (path, content hash) pairs."""
    return hashing.sha256_text(json.dumps(sorted(batch.items())))


def files_sensor(cluster: Cluster, job: Any, trigger: Trigger, files: FilesTrigger, name: str) -> dg.SensorDefinition:
    run_config = trigger_run_config(cluster, trigger)
    folder = paths.resolve(files.path, cluster.base_dir)
    pattern, min_age = files.pattern, duration_seconds(files.min_age)
    interval = max(1, int(round(duration_seconds(files.interval))))

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        tags=_tags(cluster, "files"),
        description=f"trigger.files of cluster/{cluster.spec.identifier}: one run per batch of new or changed "
        f"`{pattern}` files in {folder} (older than {files.min_age}), looked at every {interval}s",
    )
    def _watch(context: dg.SensorEvaluationContext):
        if not Path(folder).is_dir():
            return dg.SkipReason(
                f"folder {folder} does not exist (trigger.files.path of cluster/{cluster.spec.identifier})"
            )
        seen = json.loads(context.cursor) if context.cursor else {}
        batch, state = scan(folder, pattern, min_age, seen)
        if not batch:
            if state != seen:
                context.update_cursor(json.dumps(state, sort_keys=True))
            return dg.SkipReason(f"no new or changed files in {folder}")
        key = batch_key(batch)
        listed = json.dumps(sorted(batch))
        tags = {**_tags(cluster, "files"), keys.FILES_HASH_TAG: key, keys.FILES_COUNT_TAG: str(len(batch))}
        if len(listed) <= FILES_TAG_LIMIT:
            tags[keys.FILES_TAG] = listed
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=key, tags=tags, run_config=run_config)],
            cursor=json.dumps(state, sort_keys=True),
        )

    return _watch


# -- after --------------------------------------------------------------------------------------


def upstream_group(reference: str) -> str:
    """`cluster/<project>/<name>` -> that cluster's asset group (and job) name."""
    match = CLUSTER_ID.match(reference.strip())
    if not match:
        raise ValueError(f"trigger.after `{reference}` must name a cluster as cluster/<project>/<name>")
    return asset_name(f"{match.group(1)}__{match.group(2)}")


def after_sensor(cluster: Cluster, job: Any, trigger: Trigger, reference: str, name: str) -> dg.SensorDefinition:
    run_config = trigger_run_config(cluster, trigger)
    group = upstream_group(reference)
    if group == cluster.job_name:
        raise ValueError(f"cluster/{cluster.spec.identifier} cannot run after itself (trigger.after: {reference})")

    def _after(context: dg.MultiAssetSensorEvaluationContext):
        latest = {key: record for key, record in context.latest_materialization_records_by_key().items() if record}
        if not latest:
            return dg.SkipReason(f"no new materializations of {reference}")
        run_ids = sorted({record.run_id for record in latest.values()})
        runs = {run.run_id: run for run in context.instance.get_runs(dg.RunsFilter(run_ids=run_ids))}
        waiting = [rid for rid in run_ids if rid in runs and not runs[rid].is_finished]
        if waiting:
            return dg.SkipReason(f"waiting for run {waiting[0]} of {reference} to finish")
        context.advance_all_cursors()
        succeeded = [rid for rid in run_ids if rid not in runs or runs[rid].status == dg.DagsterRunStatus.SUCCESS]
        if not succeeded:
            return dg.SkipReason(f"the runs that materialized {reference} did not succeed: {', '.join(run_ids)}")
        consumed = sorted((key.to_user_string(), record.storage_id) for key, record in latest.items())
        key = hashing.sha256_text(json.dumps(consumed))
        return dg.RunRequest(
            run_key=key,
            tags={**_tags(cluster, "after"), keys.AFTER_RUNS_TAG: ",".join(succeeded)},
            run_config=run_config,
        )

    # Dagster steers asset-to-asset automation to Declarative Automation; a sensor that launches a
    # whole job of another cluster is the case it keeps multi-asset sensors for.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.multi_asset_sensor(
            name=name,
            monitored_assets=dg.AssetSelection.groups(group),
            job=job,
            minimum_interval_seconds=10,
            default_status=dg.DefaultSensorStatus.RUNNING,
            tags=_tags(cluster, "after"),
            description=f"trigger.after of cluster/{cluster.spec.identifier}: runs once each time a run that "
            f"materialized the assets of {reference} has succeeded",
        )(_after)
