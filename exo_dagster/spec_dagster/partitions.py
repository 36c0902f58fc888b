"""`partitions:` -> Dagster: the cluster's PartitionsDefinition, the `partition.*` template values of a run,
and the schedule a cron trigger becomes on a partitioned cluster.

Every step's asset shares one PartitionsDefinition, so the cluster job is partitioned: a run materializes
one partition of every step (`exo run --partition`, `dagster job execute --tags '{"dagster/partition": ...}'`,
an asset backfill from the UI). Time partitions' start/end templates are ISO text: `YYYY-MM-DD` for
daily/weekly/monthly, an ISO datetime with offset for hourly; `end` is the (exclusive) start of the next period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from exo_dagster import keys
from exo_dagster.errors import ExoBug, UserError
from exo_dagster.spec.ir import Cluster
from exo_dagster.spec.models import as_datetime
from exo_dagster.spec.partition_checks import KEY_HINT, partition_key_problem
from exo_dagster.spec.untrusted_text import terminal

TIME_DEFINITIONS = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}
NO_PARTITION_HINT = (
    "launch it with a partition key: `exo run FILE --partition KEY`, "
    f'`dagster job execute ... --tags \'{{"{keys.PARTITION_TAG}": "KEY"}}\'`, or a backfill in the UI'
)


def partitions_def(cluster: Cluster) -> dg.PartitionsDefinition | None:
    """The cluster's partitions (None when it has no `partitions:`)."""
    spec = cluster.spec.partitions
    if spec is None:
        return None
    time = spec.time
    if time is None:  # `static:` keys
        return dg.StaticPartitionsDefinition(list(spec.static or ()))
    end = as_datetime(time.end) if time.end else None
    return TIME_DEFINITIONS[spec.kind](start_date=as_datetime(time.start), end_date=end, timezone=time.timezone)


def _iso(value: dt.datetime, kind: str) -> str:
    return value.isoformat() if kind == "hourly" else value.date().isoformat()


def partition_fields(cluster: Cluster, definition: dg.PartitionsDefinition, key: str) -> dict[str, Any]:
    """The `partition.*` template values of partition `key`."""
    spec = cluster.spec.partitions
    if spec is None or not isinstance(definition, dg.TimeWindowPartitionsDefinition):
        return {"key": key}
    window = definition.time_window_for_partition_key(key)
    return {"key": key, "start": _iso(window.start, spec.kind), "end": _iso(window.end, spec.kind)}


def template_roots(cluster: Cluster) -> Callable[[Any], dict[str, dict[str, Any]]] | None:
    """`roots(context)` for runtime/step_compute.make_compute: `{"partition": {...}}` from the run's partition.
    A run without a partition key fails here with a plain message (its outputs would have no place)."""
    definition, spec = partitions_def(cluster), cluster.spec.partitions
    if definition is None or spec is None:
        return None

    def roots(context) -> dict[str, dict[str, Any]]:
        key = run_partition_key(context)
        if key is None:
            raise dg.Failure(
                description=f"cluster/{cluster.spec.identifier} is partitioned "
                f"({spec.kind}) and this run has no partition key; " + NO_PARTITION_HINT,
                allow_retries=False,
            )
        problem = partition_key_problem(key)  # a key a run brings (a run tag) meets the rule static keys met
        if problem:
            raise dg.Failure(
                description=terminal(
                    f"cluster/{cluster.spec.identifier}: this run's partition key cannot "
                    f"be stored: {problem}; {KEY_HINT}",
                    newlines=False,
                ),
                allow_retries=False,
            )
        return {"partition": partition_fields(cluster, definition, key)}

    return roots


def run_partition_key(context) -> str | None:
    """The run's partition key (an asset's or an op's context), or None for an unpartitioned run."""
    if getattr(context, "has_partition_key", False):
        return context.partition_key
    return (context.run.tags or {}).get(keys.PARTITION_TAG)


# -- keys ---------------------------------------------------------------------------------------


class UnknownPartition(UserError, ValueError):
    """A partition key or range that the cluster does not have."""


def keys_for(cluster: Cluster, wanted: list[str]) -> list[str]:
    """Partition keys for `exo run --partition`: each a key, or a range `FIRST...LAST` (time partitions), in order."""
    definition = partitions_def(cluster)
    if definition is None:
        raise UnknownPartition(f"cluster/{cluster.spec.identifier} has no `partitions:`; run it without --partition")
    known = definition.get_partition_keys()
    out: list[str] = []
    for item in wanted:
        if "..." in item:
            first, last = item.split("...", 1)
            if first not in known or last not in known or known.index(first) > known.index(last):
                raise UnknownPartition(
                    f"`{item}` is not a range of partitions of cluster/{cluster.spec.identifier}; " + _looks(known)
                )
            out += known[known.index(first) : known.index(last) + 1]
        elif item in known:
            out.append(item)
        else:
            raise UnknownPartition(f"unknown partition `{item}` of cluster/{cluster.spec.identifier}; " + _looks(known))
    return list(dict.fromkeys(out))


def _looks(known: Sequence[str]) -> str:
    if not known:
        return "it has no partitions yet (the first one is complete once its period has passed)"
    if len(known) <= 6:
        return "its partitions are " + ", ".join(known)
    first, last = known[0], known[-1]
    return f"its keys look like `{first}` ... `{last}` ({len(known)} partitions); a range is `{first}...{last}`"


# -- schedules ----------------------------------------------------------------------------------


def partitioned_schedule(
    cluster: Cluster,
    job: Any,
    *,
    name: str,
    cron: str,
    timezone: str,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> dg.ScheduleDefinition:
    """A cron schedule of a partitioned cluster. Time partitions: each tick runs the latest partition complete
    at the tick's time (Dagster's build_schedule_from_partitioned_job convention); static: one run per key per
    tick (run_key `<key>@<tick>`)."""
    definition = partitions_def(cluster)
    if definition is None:
        raise ExoBug(f"cluster/{cluster.spec.identifier} has no `partitions:`; it takes a plain cron schedule")

    def _tick(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time
        if isinstance(definition, dg.TimeWindowPartitionsDefinition):
            complete = definition.get_partition_keys(current_time=tick)
            key = complete[-1] if complete else None
            if key is None:
                return dg.SkipReason(
                    f"no partition of cluster/{cluster.spec.identifier} is complete at {tick.isoformat()}"
                )
            partition_keys = [key]
        else:
            partition_keys = definition.get_partition_keys()
        return [
            dg.RunRequest(
                run_key=f"{key}@{tick.isoformat()}",
                partition_key=key,
                run_config=run_config or {},
                tags=dict(tags or {}),
            )
            for key in partition_keys
        ]

    return dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags=tags,
        description=description or f"trigger.cron of partitioned cluster/{cluster.spec.identifier}",
    )(_tick)
