"""exo's run queue: Dagster's QueuedRunCoordinator plus one tag limit per cluster with `concurrency: N`.

Dagster's daemon enforces `tag_concurrency_limits` from dagster.yaml, which would mean editing it for
every cluster. This coordinator adds a rule `{key: exo/concurrency, value: "N:<cluster>", limit: N}`
for every value of that tag the instance's runs carry (run_slots.py). The daemon asks the coordinator
for its queue config at each iteration (`instance.get_concurrency_config()`), so a new cluster is
limited without restarting it. Everything else (max_concurrent_runs, the operator's own tag limits,
dequeue settings) is QueuedRunCoordinator's config, unchanged.

A launcher can set any run tag, so the tag is not taken from the launcher: `submit_run` rewrites it from
the run's definition (its job's tags in the run's snapshot; for an asset selection, the tags of the
cluster jobs its assets belong to) before the run is queued. At each iteration the coordinator also ends
runs whose slot holder on this machine is gone (run_slots.release_dead), which would otherwise count
against their cluster's limit forever.
"""

from __future__ import annotations

import logging

import dagster as dg

from exo_dagster.execution import run_slots
from exo_dagster.execution.run_slots import CONCURRENCY_TAG, parse_tag

log = logging.getLogger(__name__)


def cluster_limits(instance: dg.DagsterInstance) -> list[dict]:
    """One tag limit rule per `exo/concurrency` value in the instance (a cheap distinct-tags query)."""
    rules = []
    for key, values in instance.get_run_tags(tag_keys=[CONCURRENCY_TAG]):
        for value in sorted(values):
            parsed = parse_tag(value) if key == CONCURRENCY_TAG else None
            if parsed is not None:
                rules.append({"key": CONCURRENCY_TAG, "value": value, "limit": parsed[0]})
    return rules


def definition_value(instance: dg.DagsterInstance, run: dg.DagsterRun, workspace) -> str | None:
    """The `exo/concurrency` value the run's definition gives it, whatever its tags say."""
    snapshot = instance.get_job_snapshot(run.job_snapshot_id) if run.job_snapshot_id else None
    job_tags = (snapshot.run_tags if snapshot.run_tags is not None else snapshot.tags) if snapshot else {}
    if job_tags.get(CONCURRENCY_TAG) or not run.asset_selection or run.remote_job_origin is None:
        return job_tags.get(CONCURRENCY_TAG) or None
    origin = run.remote_job_origin  # an asset selection: the strictest limit of the clusters it touches
    repo = workspace.get_code_location(origin.location_name).get_repository(origin.repository_origin.repository_name)
    selected = run.asset_selection
    jobs = {name for node in repo.get_asset_node_snaps() if node.asset_key in selected for name in node.job_names}
    return run_slots.strictest(
        repo.get_full_job(name).run_tags.get(CONCURRENCY_TAG) for name in sorted(jobs) if repo.has_job(name)
    )


class ExoRunCoordinator(dg.QueuedRunCoordinator):
    """A QueuedRunCoordinator (same config) whose tag limits include every cluster's `concurrency:`."""

    def submit_run(self, context):
        run = context.dagster_run
        try:
            value = definition_value(self._instance, run, context.workspace)
        except Exception as exc:  # the run guard still holds the limit when the run starts
            log.warning("exo: cannot read the concurrency limit of run %s from its definition (%s)", run.run_id, exc)
            value = None
        fix = run_slots.corrected(run.tags, value)
        if run.tags.get(run_slots.SLOT_TAG):  # a slot claim is the run guard's to write
            fix[run_slots.SLOT_TAG] = ""
        if fix:
            self._instance.add_run_tags(run.run_id, fix)
            context = context._replace(dagster_run=self._instance.get_run_by_id(run.run_id) or run)
        return super().submit_run(context)

    def get_run_queue_config(self):
        try:
            run_slots.release_dead(self._instance)
        except Exception as exc:  # never stop the daemon's queue
            log.warning("exo: could not check the run slots' holders: %s", exc)
        config = super().get_run_queue_config()
        own = list(config.tag_concurrency_limits or [])
        taken = {(r.get("key"), r.get("value")) for r in own if isinstance(r.get("value"), str)}
        extra = [r for r in cluster_limits(self._instance) if (r["key"], r["value"]) not in taken]
        return (
            config.with_concurrency_settings({"runs": {"tag_concurrency_limits": [*own, *extra]}}) if extra else config
        )
