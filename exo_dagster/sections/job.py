"""A cluster section's satellites (`failure:`, `logs:`) as ops of a job of their own.

A sensor launches the job with the run it is about in its tags. The first op turns that run into
a table (the failure, the log records); the section's satellites follow it in list order, each
stored by the exo IO manager, and may also read the cluster's stored outputs
(`${{ satellites.X.output }}`), loaded through the IO manager as the assets they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from exo_dagster import keys
from exo_dagster.dagster_private import resolve_dagster_type
from exo_dagster.runtime.step_compute import make_compute
from exo_dagster.spec.ir import Cluster, ParsedStep
from exo_dagster.spec.untrusted_text import markdown_text
from exo_dagster.spec_dagster.partitions import partitions_def
from exo_dagster.spec_dagster.retry_policy import retry_policy

FIRST_NODE_OUTPUT = "result"
HANDLED_IN_RUN = "in-run"  # the value of `exo/sections` on a run that ran its own sections (run_end.py)


def handled_in_run(run: dg.DagsterRun) -> bool:
    """True when the run ran its own sections when its process ended, so the sensors skip it (run_end.py)."""
    return run.tags.get(keys.SECTIONS_TAG) == HANDLED_IN_RUN


def view_metadata(cluster: Cluster, section: str, name: str) -> dict[str, str]:
    """The DuckDB catalog name for an op output (ops have no asset key to derive one from)."""
    from exo_dagster.sdk.sql_text import sql_name

    return {keys.VIEW: f"{sql_name(cluster.spec.short_name + '_' + section)}.{sql_name(name)}"}


def build_section_job(
    cluster: Cluster,
    *,
    name: str,
    section: str,
    steps: list[ParsedStep],
    first: dg.OpDefinition,
    first_table: str,
    io_manager_key: str,
    roots: Callable[[Any], dict[str, dict[str, Any]]] | None = None,
    description: str = "",
    about_run_tag: str | None = None,
) -> dg.JobDefinition:
    """`first` (an op producing the section's input table, known to templates as `first_table`)
    followed by one op per step; each step's `previous` is the step above it, or `first_table`."""
    main = {s.identifier: s for s in cluster.steps}
    nodes: list[dg.OpDefinition] = [first]
    node_of = {first_table: first.name}
    deps: dict[str, dict[str, dg.DependencyDefinition]] = {}
    previous = first_table
    for step in steps:
        op_def, wired = _step_op(cluster, section, step, main, previous, io_manager_key, roots, about_run_tag)
        nodes.append(op_def)
        deps[op_def.name] = {
            arg: dg.DependencyDefinition(node_of[ident], FIRST_NODE_OUTPUT) for arg, ident in wired.items()
        }
        node_of[step.identifier] = op_def.name
        previous = step.identifier
    graph = dg.GraphDefinition(name=name, node_defs=nodes, dependencies=deps, description=description)
    # in-process: a few ops in a row, started right after the run they are about
    # (not the code location's default executor)
    return graph.to_job(
        tags={keys.CLUSTER_TAG: cluster.spec.identifier, keys.ROLE_TAG: section}, executor_def=dg.in_process_executor
    )


def _step_op(
    cluster: Cluster,
    section: str,
    step: ParsedStep,
    main: dict[str, ParsedStep],
    previous: str,
    io_manager_key: str,
    roots,
    about_run_tag: str | None = None,
) -> tuple[dg.OpDefinition, dict[str, str]]:
    """One satellite as an op; returns it and {input name: upstream identifier} for op-to-op inputs.

    Outputs of the cluster's own steps are not op inputs (Dagster loads asset inputs only in asset
    jobs): the op loads them through the IO manager, as the asset they are."""
    ins: dict[str, dg.In] = {}
    arg_to_id: dict[str, str] = {}
    from_cluster: list[str] = []
    upstream = list(step.references)
    if previous not in upstream:
        upstream.append(previous)
    for ident in upstream:
        if ident in main:
            from_cluster.append(ident)
            continue
        arg = "in_" + "".join(c if c.isalnum() else "_" for c in ident).strip("_")
        arg_to_id[arg] = ident
        ins[arg] = dg.In()
    compute = make_compute(cluster, step, previous, roots=roots)
    partitioned = partitions_def(cluster)

    @dg.op(
        name=f"{cluster.job_name}__{section}__{step.asset_name}",
        ins=ins,  # op names are location-wide
        out=dg.Out(io_manager_key=io_manager_key, metadata=view_metadata(cluster, section, step.identifier)),
        description=markdown_text(step.spec.name + (f"\n\n{step.spec.description}" if step.spec.description else "")),
        tags={keys.SATELLITE_TAG: step.satellite.name},
        retry_policy=retry_policy(cluster.spec, step.spec),
    )
    def _section_step(context, **tables):
        given = {arg_to_id[k]: v for k, v in tables.items()}
        manager = getattr(context.resources, io_manager_key)
        partition = about_partition(context, about_run_tag) if partitioned is not None and from_cluster else None
        for ident in from_cluster:
            given[ident] = load_asset(
                context, manager, dg.AssetKey(cluster.asset_key_path(ident)), partition, partitioned
            )
        return compute(context, given)

    return _section_step, dict(arg_to_id)


def load_asset(
    context,
    manager: dg.IOManager,
    key: dg.AssetKey,
    partition: str | None = None,
    partitioned: dg.PartitionsDefinition | None = None,
):
    """A cluster step's stored output, read by the IO manager exactly as a downstream asset would
    (for a partitioned cluster: the partition of the run the section is about)."""
    partitions = partitioned if partition is not None else None  # a partition key, or no partitioning at all
    output = dg.build_output_context(
        asset_key=key, name=key.path[-1], step_key="none", partition_key=partition, asset_partitions_def=partitions
    )
    return manager.load_input(
        dg.build_input_context(
            asset_key=key,
            upstream_output=output,
            instance=context.instance,
            name=key.path[-1],
            dagster_type=resolve_dagster_type(dg.Any),
            partition_key=partition,
            asset_partitions_def=partitions,
        )
    )


def about_partition(context, about_run_tag: str | None) -> str:
    """The partition of the run a section job is about (its tag `about_run_tag` names that run)."""
    run_id = context.run.tags.get(about_run_tag) if about_run_tag else None
    run = context.instance.get_run_by_id(run_id) if run_id else None
    key = run.tags.get(keys.PARTITION_TAG) if run is not None else None
    if key is None:
        raise dg.Failure(
            description=f"run {run_id} of partitioned cluster/{context.run.tags.get(keys.CLUSTER_TAG)} had no "
            "partition key: there is no stored output of it to read",
            allow_retries=False,
        )
    return key
