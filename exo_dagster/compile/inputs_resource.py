"""A cluster's `inputs:` as Dagster run config: one resource per cluster whose config schema is the inputs.

Why a resource: every step of a run must see the same values, the launchpad must offer a typed form
(Dagster scaffolds a resource's config, with defaults and descriptions, and checks types and enums
before a run is created), and both the cluster's job and an asset-graph Materialize of its steps must
ask for them. A job-level ConfigMapping would be shorter to write, but Dagster refuses it on
partitioned jobs. The run config is therefore Dagster's own:

    resources:
      inputs__acme__sales:
        config: {since: 2026-11-01}
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from exo_dagster.runtime.run_inputs import has_inputs, resource_key
from exo_dagster.spec.input_values import choice_text, resolve_values
from exo_dagster.spec.ir import Cluster
from exo_dagster.spec.untrusted_text import terminal

_SCALARS = {"string": str, "int": int, "float": float, "bool": bool, "date": str, "datetime": str}


def required_keys(cluster: Cluster) -> set[str]:
    """The resource keys a step op of this cluster requires (none without `inputs:`)."""
    return {resource_key(cluster)} if has_inputs(cluster) else set()


def _config_type(cluster: Cluster, name: str, declared: Any) -> Any:
    if declared.type == "enum":
        # the choices by their text: Dagster keys enum values by Python value, and 1 == True
        return dg.Enum(f"{cluster.job_name}__{name}", [dg.EnumValue(choice_text(v)) for v in declared.values])
    if declared.type == "list":
        return [dg.Any]
    return _SCALARS[declared.type]


def _field(cluster: Cluster, name: str, declared: Any) -> dg.Field:
    kind = (
        f"{declared.type} ({', '.join(map(choice_text, declared.values))})"
        if declared.type == "enum"
        else declared.type
    )
    kind += (
        " YYYY-MM-DD"
        if declared.type == "date"
        else " ISO 8601, e.g. 2026-11-01T08:00:00"
        if declared.type == "datetime"
        else ""
    )
    text = terminal(f"{declared.description} [{kind}]" if declared.description else kind)  # the Launchpad's text
    config_type = _config_type(cluster, name, declared)
    if declared.required:
        return dg.Field(config_type, is_required=True, description=text)
    if declared.default is not None:
        default = resolve_values({name: declared}, {})[name]
        return dg.Field(
            config_type, default_value=choice_text(default) if declared.type == "enum" else default, description=text
        )
    return dg.Field(dg.Noneable(config_type), is_required=False, description=text)


def resource(cluster: Cluster) -> dg.ResourceDefinition:
    """The resource whose value is the run's inputs, each its type's canonical value (spec/input_values.py)."""
    declared = cluster.spec.inputs

    def values(init_context) -> dict[str, Any]:
        return resolve_values(declared, dict(init_context.resource_config or {}))

    return dg.ResourceDefinition(
        resource_fn=values,
        config_schema={name: _field(cluster, name, spec) for name, spec in declared.items()},
        description=f"Run inputs of cluster/{cluster.spec.identifier} (`${{{{ inputs.NAME }}}}`)",
    )


def resources(cluster: Cluster) -> dict[str, dg.ResourceDefinition]:
    return {resource_key(cluster): resource(cluster)} if has_inputs(cluster) else {}


def run_config(cluster: Cluster, given: dict[str, Any]) -> dict[str, Any]:
    """Run config giving `given` as the cluster's inputs (a trigger's `inputs:`, `exo run --input`);
    {} without inputs."""
    if not has_inputs(cluster):
        return {}
    return {"resources": {resource_key(cluster): {"config": config_values(cluster, given)}}}


def config_values(cluster: Cluster, given: dict[str, Any]) -> dict[str, Any]:
    """Given values in the form the config schema takes (an enum by its text, a date as YYYY-MM-DD)."""
    declared = cluster.spec.inputs
    values = resolve_values(declared, given)
    return {
        name: (choice_text(value) if declared[name].type == "enum" else value)
        for name, value in values.items()
        if name in given and value is not None
    }
