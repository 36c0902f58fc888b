"""exo's run queue: Dagster's QueuedRunCoordinator plus one tag limit per cluster with `concurrency: N`.

Dagster's daemon enforces `tag_concurrency_limits` from dagster.yaml, which would mean editing it for
every cluster. This coordinator adds a rule `{key: exo/concurrency, value: "N:<cluster>", limit: N}`
for every value of that tag the instance's runs carry (run_slots.py). The daemon asks the coordinator
for its queue config at each iteration (`instance.get_concurrency_config()`), so a new cluster is
limited without restarting it. Everything else (max_concurrent_runs, the operator's own tag limits,
dequeue settings) is QueuedRunCoordinator's config, unchanged.
"""

from __future__ import annotations

import dagster as dg

from exo_dagster.execution.run_slots import CONCURRENCY_TAG, parse_tag


def cluster_limits(instance: dg.DagsterInstance) -> list[dict]:
    """One tag limit rule per `exo/concurrency` value in the instance (a cheap distinct-tags query)."""
    rules = []
    for key, values in instance.get_run_tags(tag_keys=[CONCURRENCY_TAG]):
        for value in sorted(values):
            parsed = parse_tag(value) if key == CONCURRENCY_TAG else None
            if parsed is not None:
                rules.append({"key": CONCURRENCY_TAG, "value": value, "limit": parsed[0]})
    return rules


class ExoRunCoordinator(dg.QueuedRunCoordinator):
    """A QueuedRunCoordinator (same config) whose tag limits include every cluster's `concurrency:`."""

    def get_run_queue_config(self):
        config = super().get_run_queue_config()
        own = list(config.tag_concurrency_limits or [])
        taken = {(r.get("key"), r.get("value")) for r in own if isinstance(r.get("value"), str)}
        extra = [r for r in cluster_limits(self._instance) if (r["key"], r["value"]) not in taken]
        return config.with_concurrency_settings({"runs": {"tag_concurrency_limits": [*own, *extra]}}) if extra else config
