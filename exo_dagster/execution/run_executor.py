"""The executor every run of a cluster's steps goes through, however it was launched.

A cluster job's executor (local, in-process, Celery, Kubernetes) is wrapped once at compile time,
and Dagster's implicit asset job (the UI's "Materialize", "Materialize all", asset backfills) gets
`asset_job_executor`, which picks the executor the selected steps' cluster would use. The wrapper
is where every launch path meets: the UI, schedules and sensors (run workers), `dagster job execute`
and `exo run` (in-process orchestration) all call `execute` in the process that orchestrates the run.
So it is where exo:

- tags the run: `exo/executor` (which executor ran the steps) and, for asset-selection runs, the
  cluster's own run tags (`exo/cluster`, `dagster/max_runtime`, `exo/compute`);
- holds the run until its cluster has a free slot (`concurrency:`, run_slots.py): in-process runs never
  pass through the daemon's queue;
- enforces the SLA (`sla.SlaGuard`): with or without a daemon, a run past it fails with "SLA exceeded";
- runs the `failure:`/`logs:` sections once the run has ended (the `at_end` the compiler passes:
  `sections.run_end.claim`).
- warns in the run's log when the webserver or daemon that launched it predates exo's dagster.yaml
  (instance_defaults.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from exo_dagster import keys
from exo_dagster.dagster_private import (
    DagsterEvent,
    DagsterExecutionInterruptedError,
    EngineEventData,
    Executor,
    InProcessExecutor,
    RetryMode,
    StepDependencyConfig,
)
from exo_dagster.errors import ExoBug, TransientError
from exo_dagster.execution import instance_defaults, launch_paths, run_slots
from exo_dagster.execution import sla_guard as sla
from exo_dagster.execution.cluster_executor import ClusterExecutorDefinition
from exo_dagster.runtime import run_inputs
from exo_dagster.spec.ir import Cluster, step_of

EXECUTOR_TAG = keys.EXECUTOR_TAG
CLUSTER_TAG = keys.CLUSTER_TAG
MAX_RUNTIME_TAG = keys.MAX_RUNTIME_TAG
_RETRY_EVENTS = (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED)


# Called once the run's steps are done (the compiler passes the failure/logs sections' `run_end.claim`).
RunEnd = Callable[[dg.DagsterInstance, str, list[Cluster]], Any]
# The run tags of an asset-selection run over some clusters (asset_run_tags)
RunTags = Callable[[Sequence[Cluster]], Mapping[str, str]]


class SlaExceeded(TransientError):
    """The run took longer than its cluster's `sla:` and was stopped (a later run may be faster)."""


def clusters_in_plan(clusters: Sequence[Cluster], step_keys: Sequence[str]) -> list[Cluster]:
    """The clusters whose steps this run executes (an asset-selection run may touch several)."""
    return [c for c in clusters if any(step_of(c, key) is not None for key in step_keys)]


class GuardedExecutor(Executor):
    """Runs the chosen executor, with exo's run tags, SLA and sections around it."""

    def __init__(
        self,
        clusters: Sequence[Cluster],
        choose,
        retries: RetryMode,
        step_dependency_config: StepDependencyConfig,
        run_tags: RunTags,
        at_end: RunEnd,
    ):
        self._clusters, self._choose, self._retries, self._at_end = list(clusters), choose, retries, at_end
        self._step_dependency_config, self._run_tags = step_dependency_config, run_tags
        self._inner: Executor | None = None

    def __getattr__(self, name: str) -> Any:
        # Execution loops that read their executor off the run's context (dagster-celery's `app_args()`)
        # see the executor that is running the steps.
        inner = self.__dict__.get("_inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    @property
    def retries(self) -> RetryMode:
        return self._retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        instance, run = plan_context.instance, plan_context.dagster_run
        mine = clusters_in_plan(self._clusters, execution_plan.step_keys_to_execute)
        for cluster in mine:  # the run's inputs fit, before any step runs (and before any slot or device is taken)
            run_inputs.check_run(cluster, run.run_config or {})
        name, inner = self._choose(mine)
        self._inner = inner
        tags = {EXECUTOR_TAG: name}
        if run.job_name not in {c.job_name for c in mine}:  # an asset-selection run: the cluster's run tags too
            tags.update({k: v for k, v in self._run_tags(mine).items() if k not in run.tags})
        # the limit is the definition's: a launcher's `exo/concurrency` is overwritten (run_slots.py)
        tags.update(run_slots.corrected(run.tags, run_slots.definition_tag(mine)))
        instance.add_run_tags(run.run_id, tags)
        if launch_paths.launched_by_another_process() and (late := instance_defaults.stale_instance(instance)):
            plan_context.log.warning(late)  # its launcher predates exo's dagster.yaml: in the run's log, loudly
        seconds = _max_runtime({**tags, **run.tags})
        guard = sla.SlaGuard(seconds, _started(instance, run.run_id))
        events = inner.execute(plan_context, execution_plan)
        try:
            # a cluster with `concurrency:` waits for a slot first (a run cancelled meanwhile still ends its sections)
            yield from _slot(plan_context, instance, run.run_id, run_slots.limits(mine))
            with guard:
                for event in events:
                    yield event
                    # The executor stops its steps on the interrupt (and must be let to); an interrupted step
                    # that is up for retry, or a guard that could not interrupt (not the main thread), ends it here.
                    if guard.expired and (not guard.signalled or event.event_type in _RETRY_EVENTS):
                        raise SlaExceeded(guard.message())
            if guard.expired:
                raise SlaExceeded(guard.message())
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            if guard.expired:
                raise SlaExceeded(guard.message()) from None
            raise
        finally:
            events.close()
            self._at_end(instance, run.run_id, mine)


def _slot(plan_context, instance: dg.DagsterInstance, run_id: str, limits: dict[str, int]) -> Iterator[dg.DagsterEvent]:
    """Wait for a slot of the run's clusters, logging each wait; a cancellation while waiting ends the run."""
    try:
        for message in run_slots.wait_for_slot(instance, run_id, limits):
            yield DagsterEvent.engine_event(plan_context, message, EngineEventData())
    except run_slots.SlotWaitCancelled as exc:
        raise DagsterExecutionInterruptedError(str(exc)) from None


def _max_runtime(tags) -> float | None:
    raw = tags.get(MAX_RUNTIME_TAG)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _started(instance: dg.DagsterInstance, run_id: str) -> float | None:
    record = instance.get_run_record_by_id(run_id)
    return record.start_time if record is not None else None


def guarded(
    executor_def: dg.ExecutorDefinition, name: str, cluster: Cluster, tags: Mapping[str, str], at_end: RunEnd
) -> ClusterExecutorDefinition:
    """`executor_def` (a cluster job's, `name` its executor) with exo's run tags, SLA guard and sections around
    every run; `tags` are the cluster job's run tags."""

    create_inner = _creation_fn(executor_def)

    def create(init_context) -> Executor:
        inner = create_inner(init_context)
        return GuardedExecutor(
            [cluster],
            lambda _mine: (name, inner),
            inner.retries,
            inner.step_dependency_config,
            lambda _mine: tags,
            at_end,
        )

    return ClusterExecutorDefinition(
        cluster=cluster,
        executor_name=name,
        name=executor_def.name,
        config_schema=executor_def.config_schema,
        requirements=executor_def.get_requirements,
        executor_creation_fn=create,
        description=executor_def.description,
    )


def _creation_fn(executor_def: dg.ExecutorDefinition) -> Callable[[Any], Executor]:
    """The function that creates `executor_def`'s executor (every executor exo wraps has one)."""
    create = executor_def.executor_creation_fn
    if create is None:
        raise ExoBug(f"executor {executor_def.name} has no executor_creation_fn")
    return create


def asset_job_executor(
    clusters: Callable[[], Sequence[Cluster]],
    executor_of: Callable[[Cluster], str],
    tags_of: Callable[[Cluster], Mapping[str, str]],
    at_end: RunEnd,
) -> dg.ExecutorDefinition:
    """The default executor of Dagster's implicit asset job: the selected steps run on the executor their
    cluster's job uses (`executor_of`); steps of clusters that disagree, or of a cluster on Celery/Kubernetes
    (whose config the asset job does not carry), run on exo's local executor. `clusters()` is read when a run
    starts (the clusters known by then); `tags_of` gives each cluster job's run tags."""
    from exo_dagster.execution.gpu_executor import EXO_LOCAL_CONFIG, exo_local_executor

    create_local = _creation_fn(exo_local_executor)

    def create(init_context) -> Executor:
        config = init_context.executor_config
        retries = RetryMode.from_config(config["retries"])
        if retries is None:  # `retries` is a config selector: Dagster always fills in exactly one choice
            raise ExoBug("the executor config has no `retries` choice")
        dependency = StepDependencyConfig.from_config(config.get("step_dependency_config"))

        def choose(mine: list[Cluster]) -> tuple[str, Executor]:
            chosen = {executor_of(c) for c in mine}
            if chosen == {"in-process"}:
                return "in-process", InProcessExecutor(retries=retries, step_dependency_config=dependency)
            return "local", create_local(init_context)

        return GuardedExecutor(
            clusters(), choose, retries, dependency, lambda chosen: asset_run_tags(chosen, tags_of), at_end
        )

    return dg.ExecutorDefinition(
        name="exo",
        config_schema=EXO_LOCAL_CONFIG,
        requirements=dg.multiple_process_executor_requirements(),
        executor_creation_fn=create,
        description="exo: each selection runs on its cluster's executor (in-process or exo's local GPU-aware one)",
    )


def asset_run_tags(clusters: Sequence[Cluster], tags_of: Callable[[Cluster], Mapping[str, str]]) -> dict[str, Any]:
    """The run tags of an asset-selection run over `clusters`: each cluster job's tags, merged (the
    strictest SLA, GPU if any needs one, the smallest `concurrency:`)."""
    merged: dict[str, str] = {}
    runtimes = []
    for cluster in clusters:
        for key, value in tags_of(cluster).items():
            if key == MAX_RUNTIME_TAG:
                runtimes.append(float(value))
            elif key == run_slots.CONCURRENCY_TAG:  # one tag per run: the strictest limit holds it
                merged[key] = run_slots.strictest([value, merged.get(key)]) or value
            elif key == CLUSTER_TAG and key in merged and value not in merged[key].split(","):
                merged[key] += f",{value}"
            else:
                merged.setdefault(key, value)
    if runtimes:
        merged[MAX_RUNTIME_TAG] = sla.max_runtime_tag(min(runtimes))
    return merged
