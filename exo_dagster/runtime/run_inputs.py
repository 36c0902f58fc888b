"""A run's inputs at run time: where they live in the run (a per-cluster resource) and the check before any step.

The resource itself is built by compile/inputs_resource.py; this module is what the run guard and the
steps need, below the compiler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exo_dagster.errors import UserError
from exo_dagster.spec.input_values import InputValueError, resolve_values
from exo_dagster.spec.ir import Cluster


class InputsInvalid(UserError):
    """The run's inputs do not fit their declared types; no step was run."""


def resource_key(cluster: Cluster) -> str:
    """The run-config key of the cluster's inputs: `inputs__<project>__<name>`."""
    return f"inputs__{cluster.job_name}"


def has_inputs(cluster: Cluster) -> bool:
    return bool(cluster.spec.inputs)


def step_values(cluster: Cluster, context: Any) -> dict[str, Any]:
    """The inputs a step of `cluster` sees (the resource's value); {} for a cluster without `inputs:`."""
    if not has_inputs(cluster):
        return {}
    return dict(getattr(context.resources, resource_key(cluster)))


def check_run(cluster: Cluster, run_config: Mapping[str, Any]) -> None:
    """Raise InputsInvalid, naming every problem, when the run's inputs do not fit (called before any step runs).
    Dagster's config check has already caught missing and ill-typed values; dates and lists are checked here.
    `run_config`: the run's config as launched (defaults, valid by the spec's check, are left to the resource)."""
    if not has_inputs(cluster):
        return
    entry = (run_config.get("resources") or {}).get(resource_key(cluster)) or {}
    config = entry.get("config") if isinstance(entry, Mapping) else None
    given = {k: v for k, v in dict(config or {}).items() if v is not None}
    try:
        resolve_values(cluster.spec.inputs, given)
    except InputValueError as exc:
        raise InputsInvalid(f"the run's inputs of cluster/{cluster.spec.identifier} do not fit: {exc}") from None
