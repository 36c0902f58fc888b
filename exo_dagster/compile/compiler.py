"""The compiler: a checked Cluster in, `dagster.Definitions` out. Pure: no I/O, no network.

Each step becomes one asset whose compute function resolves the step's templates at run
time, validates its config, and calls the satellite; outputs are stored by the exo IO manager.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from exo_dagster.compile import failure_section as failure
from exo_dagster.compile import fan_out as chunked
from exo_dagster.compile import inputs_resource, partitions, run_end, skip_gate, sla, triggers
from exo_dagster.compile import logs_section as log_forwarding
from exo_dagster.compile import retry_policy as retry
from exo_dagster.execution import launch_paths, run_executor, run_slots
from exo_dagster.execution import tags as backend_tags
from exo_dagster.execution.device_leases import gpu_lease
from exo_dagster.execution.executor_choice import executor_for, resolve_executor_name
from exo_dagster.runtime import empty_input
from exo_dagster.runtime.step_compute import count_rows, make_compute
from exo_dagster.sdk.hashing import short_hash
from exo_dagster.sdk.sql_text import sql_name
from exo_dagster.spec.ir import Cluster, ParsedStep, op_name
from exo_dagster.spec.models import Resources
from exo_dagster.spec.untrusted_text import markdown_text, terminal

IO_MANAGER_KEY = "exo_io"
MAX_KINDS = 3  # Dagster shows at most three kind badges per asset


def compile_clusters(
    clusters: Iterable[Cluster], *, resources: dict[str, Any] | None = None, executor: str | None = None
) -> dg.Definitions:
    """Definitions for many clusters, sharing one IO manager."""
    return definitions_with_resources(
        [compile_cluster(c, with_resources=False, executor=executor) for c in clusters], resources
    )


def definitions_with_resources(parts: list[dg.Definitions], resources: dict[str, Any] | None = None) -> dg.Definitions:
    """Compiled clusters merged into one Definitions with the shared exo IO manager."""
    from exo_dagster.storage.intermediates import ExoIntermediatesIOManager
    from exo_dagster.storage.io_manager import ExoParquetIOManager

    merged = dg.Definitions.merge(*parts) if parts else dg.Definitions()
    # Dagster's implicit asset job (the UI's Materialize, asset backfills) runs like the clusters' jobs
    compiled = [
        guard
        for part in parts
        for job in part.jobs or []
        if (guard := getattr(getattr(job, "executor_def", None), "exo_cluster", None)) is not None
    ]
    asset_executor = run_executor.asset_job_executor(
        [cluster for cluster, _ in compiled],
        {cluster.job_name: name for cluster, name in compiled},
        lambda chosen: run_executor.asset_run_tags(chosen, run_tags),
        run_end.claim,
    )
    return dg.Definitions.merge(
        merged,
        dg.Definitions(
            resources={
                IO_MANAGER_KEY: ExoParquetIOManager(),
                "io_manager": ExoIntermediatesIOManager(),
                **(resources or {}),
            },
            executor=asset_executor,
        ),
    )


def executor_name(cluster: Cluster, default: str | None = None) -> str:
    """The executor a cluster's job runs on: `local`, `in-process`, `celery` or `k8s`."""
    spec = cluster.spec
    return resolve_executor_name(
        spec.executor or default,
        chain_on_cpu=spec.execution == "sequential"
        and not any(_resources(s).gpu or s.spec.fan_out for s in cluster.steps),
    )


def run_tags(cluster: Cluster) -> dict[str, str]:
    """The cluster job's run tags (asset-selection runs of its steps get them too, run_executor.py)."""
    spec = cluster.spec
    tags = {**spec.tags, "exo/cluster": spec.identifier}  # the cluster's `tags:`; exo's own keys are reserved
    if spec.sla is not None:
        tags["dagster/max_runtime"] = sla.max_runtime_tag(spec.sla_seconds)
    if any(_resources(s).gpu for s in cluster.steps):
        tags["exo/compute"] = "gpu"
    if spec.concurrency is not None:  # at most N runs at once: the run queue and the run guard read it
        tags[run_slots.CONCURRENCY_TAG] = run_slots.concurrency_tag(spec.concurrency, spec.identifier)
    return tags


def compile_cluster(cluster: Cluster, *, with_resources: bool = True, executor: str | None = None) -> dg.Definitions:
    """`executor`: the default for clusters that name none (else EXO_EXECUTOR, else exo's local executor)."""
    group = cluster.job_name
    by_id = {s.identifier: s for s in cluster.steps}
    ensure_recursion_depth(len(cluster.steps))
    assets = [_asset(cluster, step, group, by_id) for step in cluster.steps]
    keys = [asset_key(cluster, s.identifier) for s in cluster.steps]
    spec = cluster.spec
    name = executor_name(cluster, executor)
    job = dg.define_asset_job(
        name=cluster.job_name,
        selection=dg.AssetSelection.assets(*keys),
        description=markdown_text(spec.description or spec.title or f"cluster/{spec.identifier}"),
        tags=run_tags(cluster),
        executor_def=run_executor.guarded(executor_for(name), name, [cluster], run_tags, run_end.claim),
    )
    if spec.partitions is not None:  # one partition per run: Dagster's CLI refuses a range; say what to run instead
        launch_paths.explain_partition_ranges()
    schedules, sensors = triggers.definitions(cluster, job)
    section_jobs = []
    for section in (failure, log_forwarding):  # the `failure:` and `logs:` sections: a job and its sensors each
        more_jobs, more_sensors = section.definitions(cluster, job, IO_MANAGER_KEY)
        section_jobs += more_jobs
        sensors += more_sensors
    resources = dict(inputs_resource.resources(cluster))  # per cluster, so merged locations keep them
    if with_resources:
        from exo_dagster.storage.intermediates import ExoIntermediatesIOManager
        from exo_dagster.storage.io_manager import ExoParquetIOManager

        resources[IO_MANAGER_KEY] = ExoParquetIOManager()
        resources["io_manager"] = ExoIntermediatesIOManager()
    return dg.Definitions(
        assets=assets, jobs=[job, *section_jobs], schedules=schedules, sensors=sensors, resources=resources
    )


def asset_key(cluster: Cluster, identifier: str) -> dg.AssetKey:
    """A step's asset key: [project, cluster name, identifier], e.g. `exospherehost/orders_report/files`.
    Its op is the key joined by `__` (`exospherehost__orders_report__files`), as before the key had three parts."""
    return dg.AssetKey(cluster.asset_key_path(identifier))


def owners(cluster: Cluster, step: ParsedStep) -> list[str]:
    """The step's `owners:`, else the cluster's."""
    return list(step.spec.owners if step.spec.owners is not None else cluster.spec.owners)


def asset_tags(cluster: Cluster, step: ParsedStep) -> dict[str, str]:
    """The cluster's `tags:` with the step's over them."""
    return {**cluster.spec.tags, **step.spec.tags}


def description(step: ParsedStep) -> str:
    """Plain text first (the catalog and op graph show the first line unrendered): the step's name, its
    description, then what the satellite does. The asset page renders it as markdown, so each is escaped:
    a cluster file's text shows as written, never as links, images or HTML (spec/untrusted_text.py)."""
    text = markdown_text(step.spec.name)
    if step.spec.description and step.spec.description.strip() != step.spec.name:
        text += f"\n\n{markdown_text(step.spec.description.strip())}"
    if step.satellite.docs:  # a configured satellite's docs come from its file
        text += f"\n\n{markdown_text(f'{step.satellite.id}: {_plain(step.satellite.docs.splitlines()[0])}')}"
    return text


def _plain(text: str) -> str:
    """Inline code marks dropped (`mode` -> mode): the catalog shows descriptions as plain text."""
    return text.replace("`", "")


def ensure_recursion_depth(steps: int) -> None:
    """Dagster walks a job's graph recursively (graph_definition.create_adjacency_lists), as deep as the
    longest chain: a long sequential cluster would hit Python's recursion limit when its job resolves."""
    needed = 8 * steps + 2000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def _resources(step: ParsedStep):
    return step.spec.resources or step.satellite.resources


def _code_reference(cluster: Cluster, step: ParsedStep) -> dg.CodeReferencesMetadataValue:
    """Links the asset in the UI to the step's line in the cluster YAML."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(
            code_references=[
                dg.LocalFileCodeReference(
                    file_path=cluster.source_path,
                    line_number=step.location.line,
                    label=terminal(
                        f"{step.spec.name} ({Path(cluster.file).name}:{step.location.line})", newlines=False
                    ),
                ),
            ]
        )


def _deps(cluster: Cluster, step: ParsedStep) -> list[str]:
    """Upstream identifiers: what the step references, plus its predecessor in list order."""
    upstream = list(step.references)
    if cluster.spec.execution == "sequential" and step.index > 0:
        previous = cluster.steps[step.index - 1].identifier
        if previous not in upstream:
            upstream.append(previous)
    return upstream


def _asset(cluster: Cluster, step: ParsedStep, group: str, by_id: dict[str, ParsedStep]) -> dg.AssetsDefinition:
    upstream = _deps(cluster, step)
    ins = {f"in_{by_id[u].asset_name}": dg.AssetIn(key=asset_key(cluster, u)) for u in upstream}
    arg_to_id = {f"in_{by_id[u].asset_name}": u for u in upstream}
    previous = (
        cluster.steps[step.index - 1].identifier if step.index > 0 and cluster.spec.execution == "sequential" else None
    )
    if previous is None and len(step.references) == 1:
        previous = step.references[0]
    resources = _resources(step)
    kinds = list(dict.fromkeys((["gpu"] if resources.gpu else []) + list(step.satellite.kinds)))[:MAX_KINDS]
    shown_config = {
        **step.config,
        **(
            {
                "secrets": {
                    k: f"<secret from {v.kind} {v.name if v.kind != 'literal' else ''}>".replace(" >", ">")
                    for k, v in step.secrets.items()
                }
            }
            if step.secrets
            else {}
        ),
    }
    metadata = {
        "exo/satellite": f"{step.satellite.id}@{step.satellite.version}",
        "exo/view": f"{sql_name(cluster.spec.short_name)}.{sql_name(step.identifier)}",
        "exo/config": dg.MetadataValue.json(shown_config),
        "exo/input": dg.MetadataValue.json(step.spec.input),
        "exo/source": f"{step.location}",
        "dagster/code_references": _code_reference(cluster, step),
    }
    tags = {"exo/satellite": step.satellite.name, **backend_tags.step_tags(resources, cluster.spec.queues)}
    text = description(step)
    key = asset_key(cluster, step.identifier)
    fingerprint = json.dumps(
        [step.satellite.id, step.satellite.version, step.config, step.spec.input], sort_keys=True, default=str
    )

    compute = make_compute(cluster, step, previous, roots=partitions.template_roots(cluster))
    partitioned = partitions.partitions_def(cluster)
    if resources.gpu:
        compute = _leased(compute)
    graph_kwargs = dict(  # a graph-backed asset (fan-out, skip-when-empty) shows as the single-op one does
        group_name=group,
        descriptions_by_output_name={"result": text},
        metadata_by_output_name={"result": metadata},
        tags_by_output_name={"result": {**asset_tags(cluster, step), **{f"dagster/kind/{k}": "" for k in kinds}}},
        owners_by_output_name={"result": owners(cluster, step)},
        code_versions_by_output_name={"result": short_hash(fingerprint, 16)},
        partitions_def=partitioned,
    )
    skip = _skip_message(step, arg_to_id) if step.spec.skip_when_empty else None
    if step.spec.fan_out:
        return sla.with_freshness(
            chunked.graph_asset(
                key=key,
                name=op_name(cluster, step),
                ins=ins,
                chunk_rows=step.spec.fan_out.chunk_rows,
                count_rows=lambda context, upstream: count_rows(step, {arg_to_id[k]: v for k, v in upstream.items()}),
                compute=lambda context, upstream, chunk: compute(
                    context, {arg_to_id[k]: v for k, v in upstream.items()}, chunk
                ),
                op_tags=tags,
                io_manager_key=IO_MANAGER_KEY,
                retry_policy=retry.retry_policy(cluster.spec, step.spec),
                required_resource_keys=inputs_resource.required_keys(cluster),
                asset_kwargs=graph_kwargs,
                skip_message=skip,
            ),
            cluster.spec,
        )
    if skip is not None:
        return sla.with_freshness(
            skip_gate.graph_asset(
                key=key,
                name=op_name(cluster, step),
                ins=ins,
                skip_message=skip,
                compute=lambda context, upstream: compute(context, {arg_to_id[k]: v for k, v in upstream.items()}),
                op_tags=tags,
                gate_tags={
                    "exo/satellite": step.satellite.name,
                    **backend_tags.step_tags(Resources(), cluster.spec.queues),
                },
                pool=backend_tags.pool_for(resources),
                io_manager_key=IO_MANAGER_KEY,
                retry_policy=retry.retry_policy(cluster.spec, step.spec),
                asset_kwargs=graph_kwargs,
                required_resource_keys=inputs_resource.required_keys(cluster),
            ),
            cluster.spec,
        )

    @dg.multi_asset(
        name=op_name(cluster, step),  # the op: identifier first (spec/ir.py), the key stays [project, cluster, id]
        outs={
            "result": dg.AssetOut(
                key=key,
                group_name=group,
                description=text,
                metadata=metadata,
                kinds=set(kinds),
                owners=owners(cluster, step),
                tags=asset_tags(cluster, step),
                io_manager_key=IO_MANAGER_KEY,
                code_version=short_hash(fingerprint, 16),
            )
        },
        ins=ins,
        op_tags=tags,
        required_resource_keys=inputs_resource.required_keys(cluster),
        pool=backend_tags.pool_for(resources),
        partitions_def=partitioned,
        retry_policy=retry.retry_policy(cluster.spec, step.spec),
    )
    def _step(context, **upstream_tables):
        return compute(context, {arg_to_id[k]: v for k, v in upstream_tables.items()})

    return sla.with_freshness(_step, cluster.spec)


def _skip_message(step: ParsedStep, arg_to_id: dict[str, str]):
    """`skip-when-empty`: (context, upstream kwargs) -> why the step is skipped, or None (runtime/empty_input.py)."""
    watched = set(empty_input.watched(step, arg_to_id.values()))

    def message(context, upstream: dict) -> str | None:
        return empty_input.skip_message(step, {arg_to_id[k]: v for k, v in upstream.items() if arg_to_id[k] in watched})

    return message


def _leased(compute):
    """A GPU step (or fan-out chunk) computes only while it holds its devices (exo's local executor)."""

    def run(context, *args, **kwargs):
        with gpu_lease():
            return compute(context, *args, **kwargs)

    return run
