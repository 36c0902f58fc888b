"""The compiler: a checked Cluster in, its Definitions out (a CompiledCluster). Pure: no I/O, no network.

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

from exo_dagster import keys
from exo_dagster.compile import fan_out, inputs_resource, skip_gate, sla, triggers
from exo_dagster.compile.compiled import CompiledCluster
from exo_dagster.compile.merging import SharedParts, merged_definitions
from exo_dagster.compile.step_plan import RESULT, StepPlan
from exo_dagster.execution import launch_paths, run_executor, run_slots
from exo_dagster.execution import tags as backend_tags
from exo_dagster.execution.device_leases import gpu_lease
from exo_dagster.execution.executor_choice import executor_for, resolve_executor_name
from exo_dagster.runtime import empty_input
from exo_dagster.runtime.step_compute import count_rows, make_compute
from exo_dagster.sdk.doc_summary import first_sentence
from exo_dagster.sdk.hashing import short_hash
from exo_dagster.sdk.sql_text import sql_name
from exo_dagster.sections import failure, run_end
from exo_dagster.sections import logs as log_forwarding
from exo_dagster.spec.ir import Cluster, ParsedStep, op_name
from exo_dagster.spec.models import Resources
from exo_dagster.spec.untrusted_text import markdown_text, terminal
from exo_dagster.spec_dagster import partitions
from exo_dagster.spec_dagster import retry_policy as retry

IO_MANAGER_KEY = keys.IO_MANAGER_KEY
MAX_KINDS = 3  # Dagster shows at most three kind badges per asset


def compile_cluster(cluster: Cluster, *, executor: str | None = None) -> dg.Definitions:
    """One cluster's Definitions with the exo IO managers: what a script or a test runs (`resolve_job_def`).
    `executor`: the default for clusters that name none (else EXO_EXECUTOR, else exo's local executor)."""
    return dg.Definitions.merge(
        compiled_cluster(cluster, executor=executor).definitions, dg.Definitions(resources=SharedParts().resources())
    )


def compile_clusters(
    clusters: Iterable[Cluster], *, resources: dict[str, Any] | None = None, executor: str | None = None
) -> dg.Definitions:
    """Definitions for many clusters, sharing one IO manager and the asset job's executor (merging.py)."""
    return merged_definitions([compiled_cluster(c, executor=executor) for c in clusters], resources=resources)


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
    tags = {**spec.tags, keys.CLUSTER_TAG: spec.identifier}  # the cluster's `tags:`; exo's own keys are reserved
    seconds = spec.sla_seconds
    if seconds is not None:
        tags[keys.MAX_RUNTIME_TAG] = sla.max_runtime_tag(seconds)
    tags.update(backend_tags.run_tags(_resources(s) for s in cluster.steps))  # `exo/compute: gpu`
    if spec.concurrency is not None:  # at most N runs at once: the run queue and the run guard read it
        tags[run_slots.CONCURRENCY_TAG] = run_slots.concurrency_tag(spec.concurrency, spec.identifier)
    return tags


def compiled_cluster(cluster: Cluster, *, executor: str | None = None) -> CompiledCluster:
    """The cluster compiled: its assets, job, triggers and sections, with its executor and run tags as values.
    `executor`: the default for clusters that name none (else EXO_EXECUTOR, else exo's local executor)."""
    ensure_recursion_depth(len(cluster.steps))
    by_id = {s.identifier: s for s in cluster.steps}
    assets = [_asset(step_plan(cluster, step, by_id), step, cluster) for step in cluster.steps]
    spec = cluster.spec
    name = executor_name(cluster, executor)
    tags = run_tags(cluster)
    job = dg.define_asset_job(
        name=cluster.job_name,
        selection=dg.AssetSelection.assets(*(asset_key(cluster, s.identifier) for s in cluster.steps)),
        description=markdown_text(spec.description or spec.title or f"cluster/{spec.identifier}"),
        tags=tags,
        executor_def=run_executor.guarded(executor_for(name), name, cluster, tags, run_end.claim),
    )
    if spec.partitions is not None:  # one partition per run: Dagster's CLI refuses a range; say what to run instead
        launch_paths.explain_partition_ranges()
    schedules, sensors = triggers.definitions(cluster, job)
    section_jobs = []
    for section in (failure, log_forwarding):  # the `failure:` and `logs:` sections: a job and its sensors each
        more_jobs, more_sensors = section.definitions(cluster, IO_MANAGER_KEY)
        section_jobs += more_jobs
        sensors += more_sensors
    definitions = dg.Definitions(
        assets=assets,
        jobs=[job, *section_jobs],
        schedules=schedules,
        sensors=sensors,
        resources=dict(inputs_resource.resources(cluster)),  # per cluster, so merged locations keep them
    )
    return CompiledCluster(cluster=cluster, executor_name=name, run_tags=tags, definitions=definitions)


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
    description, then what the satellite does (its docs' first sentence, whole). The asset page renders it as
    markdown, so each is escaped: a cluster file's text shows as written, never as links, images or HTML
    (spec/untrusted_text.py)."""
    text = markdown_text(step.spec.name)
    if step.spec.description and step.spec.description.strip() != step.spec.name:
        text += f"\n\n{markdown_text(step.spec.description.strip())}"
    does = first_sentence(step.satellite.docs)  # a configured satellite's docs come from its file
    if does:
        text += f"\n\n{markdown_text(f'{step.satellite.id}: {_plain(does)}')}"
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


def step_plan(cluster: Cluster, step: ParsedStep, by_id: dict[str, ParsedStep]) -> StepPlan:
    """Everything the step's asset is built from, whichever shape it takes (step_plan.py)."""
    upstream = _deps(cluster, step)
    arg_to_id = {f"in_{by_id[u].asset_name}": u for u in upstream}
    previous = (
        cluster.steps[step.index - 1].identifier if step.index > 0 and cluster.spec.execution == "sequential" else None
    )
    if previous is None and len(step.references) == 1:
        previous = step.references[0]
    resources = _resources(step)
    fingerprint = json.dumps(
        [step.satellite.id, step.satellite.version, step.config, step.spec.input], sort_keys=True, default=str
    )
    compute = make_compute(cluster, step, previous, roots=partitions.template_roots(cluster))
    return StepPlan(
        key=asset_key(cluster, step.identifier),
        op_name=op_name(cluster, step),
        group=cluster.job_name,
        input_keys={arg: asset_key(cluster, u) for arg, u in arg_to_id.items()},
        arg_to_id=arg_to_id,
        description=description(step),
        metadata=_metadata(cluster, step),
        tags=asset_tags(cluster, step),
        op_tags={keys.SATELLITE_TAG: step.satellite.name, **backend_tags.step_tags(resources, cluster.spec.queues)},
        kinds=tuple(dict.fromkeys((["gpu"] if resources.gpu else []) + list(step.satellite.kinds)))[:MAX_KINDS],
        owners=tuple(owners(cluster, step)),
        code_version=short_hash(fingerprint, 16),
        partitions_def=partitions.partitions_def(cluster),
        retry_policy=retry.retry_policy(cluster.spec, step.spec),
        pool=backend_tags.pool_for(resources),
        required_resource_keys=frozenset(inputs_resource.required_keys(cluster)),
        compute=_leased(compute) if resources.gpu else compute,
        skip_message=_skip_message(step, upstream) if step.spec.skip_when_empty else None,
    )


def _metadata(cluster: Cluster, step: ParsedStep) -> dict[str, Any]:
    """Where the step comes from, shown on its asset: satellite, catalog view, config (secrets named, never
    valued), input, YAML location."""
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
    return {
        keys.SATELLITE: f"{step.satellite.id}@{step.satellite.version}",
        keys.VIEW: f"{sql_name(cluster.spec.short_name)}.{sql_name(step.identifier)}",
        keys.CONFIG: dg.MetadataValue.json(shown_config),
        keys.INPUT: dg.MetadataValue.json(step.spec.input),
        keys.SOURCE: f"{step.location}",
        keys.CODE_REFERENCES: _code_reference(cluster, step),
    }


def _asset(plan: StepPlan, step: ParsedStep, cluster: Cluster) -> dg.AssetsDefinition:
    """The step's asset in its shape: a fan-out graph, a gated graph (skip-when-empty) or a single op."""
    if step.spec.fan_out:
        asset = fan_out.graph_asset(
            plan, step.spec.fan_out.chunk_rows, lambda context, upstream: count_rows(step, upstream)
        )
    elif plan.skip_message is not None:
        gate = {keys.SATELLITE_TAG: step.satellite.name, **backend_tags.step_tags(Resources(), cluster.spec.queues)}
        asset = skip_gate.graph_asset(plan, gate)
    else:
        asset = single_op_asset(plan)
    return sla.with_freshness(asset, cluster.spec)


def single_op_asset(plan: StepPlan) -> dg.AssetsDefinition:
    """A step as one op (`multi_asset` with one output: the op is named apart from the key)."""

    @dg.multi_asset(
        name=plan.op_name,  # the op: identifier first (spec/ir.py), the key stays [project, cluster, id]
        outs={
            RESULT: dg.AssetOut(
                key=plan.key,
                group_name=plan.group,
                description=plan.description,
                metadata=dict(plan.metadata),
                kinds=set(plan.kinds),
                owners=list(plan.owners),
                tags=dict(plan.tags),
                io_manager_key=plan.io_manager_key,
                code_version=plan.code_version,
            )
        },
        ins=plan.ins,
        op_tags=dict(plan.op_tags),
        required_resource_keys=set(plan.required_resource_keys),
        pool=plan.pool,
        partitions_def=plan.partitions_def,
        retry_policy=plan.retry_policy,
    )
    def _step(context, **upstream_tables):
        return plan.compute(context, plan.upstream(upstream_tables))

    return _step


def _skip_message(step: ParsedStep, upstream: list[str]):
    """`skip-when-empty`: (context, upstream tables by identifier) -> why the step is skipped, or None
    (runtime/empty_input.py); `upstream`: the step's upstream identifiers."""
    watched = set(empty_input.watched(step, upstream))

    def message(context, upstream: dict) -> str | None:
        return empty_input.skip_message(step, {i: v for i, v in upstream.items() if i in watched})

    return message


def _leased(compute):
    """A GPU step (or fan-out chunk) computes only while it holds its devices (exo's local executor)."""

    def run(context, *args, **kwargs):
        with gpu_lease():
            return compute(context, *args, **kwargs)

    return run
