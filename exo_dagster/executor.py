"""The local GPU-aware executor: the embedded default for compiled cluster jobs.

Built on Dagster's multiprocess executor machinery (its `ActiveExecution` state machine, child
process command and event plumbing); what it adds is one scheduling rule and one env var:

- CPU steps (`exo/gpu: 0`) run in parallel processes, at most `max_concurrent` at a time.
- A GPU step (`exo/gpu: N`) starts only when N devices are free; its process gets exactly those
  devices as `CUDA_VISIBLE_DEVICES` and they stay reserved until the process exits, so no two
  running steps ever share a device. CPU steps get `CUDA_VISIBLE_DEVICES=""` (no GPU at all).
- A step that asks for more devices than the executor has fails the run at launch, before any
  step runs, instead of waiting forever.

The devices come from the executor's `gpus` config, `EXO_GPUS`, or the machine (see gpus.py).
Each launch is recorded on the step's STEP_WORKER_STARTING event as `exo/devices` metadata.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from contextlib import ExitStack
from typing import Any, Iterator, Sequence

import dagster as dg
from dagster import _check as check
from dagster._core.definitions.executor_definition import MULTI_PROC_CONFIG
from dagster._core.errors import (
    DagsterExecutionInterruptedError,
    DagsterSubprocessError,
    DagsterUnmetExecutorRequirementsError,
)
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution, _pool_key_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.child_process_executor import (
    ChildProcessCrashException,
    ChildProcessEvent,
    ChildProcessSystemErrorEvent,
    execute_child_process_command,
)
from dagster._core.executor.multiprocess import MultiprocessExecutor, MultiprocessExecutorChildProcessCommand
from dagster._core.storage.tags import PRIORITY_TAG
from dagster._utils import get_run_crash_explanation
from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info
from dagster._utils.tags import TagConcurrencyLimitsCounter

from . import gpus
from .tags import GPU_TAG

DEVICES_METADATA = "exo/devices"


class NotEnoughGpus(DagsterUnmetExecutorRequirementsError):
    """A step asks for more GPUs than the executor can ever give it."""


def gpus_needed(step: ExecutionStep) -> int:
    raw = step.tags.get(GPU_TAG, "0")
    try:
        return max(int(raw), 0)
    except ValueError:
        raise NotEnoughGpus(f"step `{step.key}` has op tag {GPU_TAG}={raw!r}; it must be a whole number of GPUs") from None


class _DeviceScheduler(ActiveExecution):
    """Dagster's ActiveExecution, choosing steps by free devices (GPU) and free CPU slots (CPU)."""

    def __init__(self, *args: Any, devices: gpus.Devices, cpu_fallback: bool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._free = list(devices.ids)
        self._cpu_fallback = cpu_fallback and not devices.ids
        self.devices_of: dict[str, tuple[str, ...]] = {}

    def _needs(self, step: ExecutionStep) -> int:
        return 0 if self._cpu_fallback else gpus_needed(step)

    def get_steps_to_execute(self, limit: int | None = None) -> Sequence[ExecutionStep]:
        check.invariant(self._context_guard, "ActiveExecution must be used as a context manager")
        self._update()
        steps = sorted((self.get_step_by_key(k) for k in self._executable), key=self._sort_key_fn)
        counter = (TagConcurrencyLimitsCounter(self._tag_concurrency_limits, [self.get_step_by_key(k) for k in self._in_flight])
                   if self._tag_concurrency_limits else None)
        cpu_running = sum(1 for k in self._in_flight if not self._needs(self.get_step_by_key(k)))
        batch: list[ExecutionStep] = []
        for step in steps:
            need = self._needs(step)
            if need > len(self._free):
                continue  # waits for devices; CPU steps behind it still go
            if not need and self._max_concurrent is not None and cpu_running >= self._max_concurrent:
                continue
            if counter is not None:
                if counter.is_blocked(step):
                    continue
                counter.update_counters_with_launched_item(step)
            pool = _pool_key_for_step(step)
            if pool and self._instance_concurrency_context:
                try:
                    priority = int(step.tags.get(PRIORITY_TAG, 0))
                except ValueError:
                    priority = 0
                if not self._instance_concurrency_context.claim(pool, step.key, priority):
                    continue
            self.devices_of[step.key] = tuple(self._free[:need])
            del self._free[:need]
            cpu_running += 0 if need else 1
            batch.append(step)
        for step in batch:
            self._in_flight.add(step.key)
            self._executable.remove(step.key)
            self._prep_for_dynamic_outputs(step)
        return batch

    def release(self, step_key: str) -> None:
        """The step's process is gone: its devices are free again."""
        self._free.extend(self.devices_of.pop(step_key, ()))


class _StepWithDevices(MultiprocessExecutorChildProcessCommand):
    """Dagster's per-step child command, run with the step's own CUDA_VISIBLE_DEVICES."""

    def __init__(self, *args: Any, devices: tuple[str, ...], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.devices = devices

    def execute(self) -> Iterator[DagsterEvent]:
        # Before any user code imports CUDA: the step sees only its own devices (none for CPU steps).
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(self.devices)
        yield from super().execute()


class GpuAwareExecutor(MultiprocessExecutor):
    """See the module docstring."""

    def __init__(self, *, devices: gpus.Devices, cpu_fallback: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.devices = devices
        self.cpu_fallback = cpu_fallback

    def check_requests(self, execution_plan: ExecutionPlan) -> None:
        """Fail before anything runs when some step can never get its GPUs."""
        if self.cpu_fallback and not self.devices.ids:
            return
        too_big = [(s.key, gpus_needed(s)) for s in execution_plan.get_steps_to_execute_in_topo_order()
                   if gpus_needed(s) > len(self.devices)]
        if too_big:
            asks = ", ".join(f"`{key}` asks for {n}" for key, n in too_big)
            raise NotEnoughGpus(
                f"not enough GPUs for this run: {asks}, but this executor has {self.devices.describe()}. "
                f"fix: lower the step's `resources: {{gpu: N}}`, run on a machine with more GPUs, "
                f"list devices in {gpus.GPUS_ENV} (e.g. {gpus.GPUS_ENV}=0,1) or the executor's `gpus` config, "
                f"or set the executor's `cpu_fallback: true` to run GPU steps on CPU where there is no GPU at all")

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        check.inst_param(plan_context, "plan_context", PlanOrchestrationContext)
        self.check_requests(execution_plan)
        job = plan_context.reconstructable_job
        multiproc_ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":
            module = job.get_module()
            preload = self._explicit_forkserver_preload or ([module] if module else ["dagster"])
            multiproc_ctx.set_forkserver_preload(["dagster._core.executor.multiprocess", *preload])

        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps using exo's GPU-aware local executor: {self.devices.describe()}, "
            f"up to {self._max_concurrent} CPU step(s) at once (pid: {os.getpid()})",
            event_specific_data=EngineEventData.multiprocess(os.getpid(), step_keys_to_execute=execution_plan.step_keys_to_execute),
        )
        with ExitStack() as stack:
            concurrency = stack.enter_context(InstanceConcurrencyContext(plan_context.instance, plan_context.dagster_run))
            active = stack.enter_context(_DeviceScheduler(
                execution_plan, retry_mode=self.retries, max_concurrent=self._max_concurrent,
                tag_concurrency_limits=self._tag_concurrency_limits, instance_concurrency_context=concurrency,
                step_dependency_config=self.step_dependency_config, devices=self.devices, cpu_fallback=self.cpu_fallback,
            ))
            yield from self._loop(plan_context, execution_plan, active, multiproc_ctx)

    def _loop(self, plan_context, execution_plan, active: _DeviceScheduler, multiproc_ctx) -> Iterator[DagsterEvent]:
        """Dagster's multiprocess loop (dagster/_core/executor/multiprocess.py), plus device release."""
        job = plan_context.reconstructable_job
        active_iters: dict[str, Iterator[DagsterEvent | None]] = {}
        errors: dict[int, SerializableErrorInfo] = {}
        processes: dict[str, Any] = {}
        term_events: dict[str, Any] = {}
        stopping = False
        try:
            while (not stopping and not active.is_complete) or active_iters:
                if active.check_for_interrupts():
                    yield DagsterEvent.engine_event(
                        plan_context, "exo local executor: received termination signal - forwarding to active child processes",
                        EngineEventData.interrupted(list(active_iters.keys())))
                    stopping = True
                    active.mark_interrupted()
                    for key, term_event in term_events.items():
                        if key in processes:
                            if processes[key].is_alive():
                                term_event.set()
                            del processes[key]

                while not stopping:
                    steps = active.get_steps_to_execute()
                    yield from active.concurrency_event_iterator(plan_context)
                    if not steps:
                        break
                    for step in steps:
                        step_context = plan_context.for_step(step)
                        term_events[step.key] = multiproc_ctx.Event()
                        active_iters[step.key] = self._launch(multiproc_ctx, job, step_context, step, errors, processes,
                                                              term_events, active.get_known_state(),
                                                              execution_plan.repository_load_data, active.devices_of[step.key])

                finished = []
                for key, step_iter in active_iters.items():
                    try:
                        event = next(step_iter)
                        if event is None:
                            continue
                        yield event
                        active.handle_event(event)
                        if event.is_resource_init_failure:
                            step_context = plan_context.for_step(active.get_step_by_key(key))
                            failure = self.log_failure_or_retry_event_after_error(
                                step_context, event.engine_event_data.error, active.get_known_state())
                            yield failure
                            active.handle_event(failure)
                    except ChildProcessCrashException as crash:
                        error = serializable_error_info_from_exc_info(sys.exc_info())
                        step_context = plan_context.for_step(active.get_step_by_key(key))
                        yield DagsterEvent.engine_event(
                            step_context,
                            get_run_crash_explanation(prefix=f"exo local executor: child process for step {key}",
                                                      exit_code=crash.exit_code),
                            EngineEventData.engine_error(error))
                        failure = self.log_failure_or_retry_event_after_error(step_context, error, active.get_known_state())
                        active.handle_event(failure)
                        yield failure
                        finished.append(key)
                        if failure.is_step_failure:
                            errors[crash.pid] = error
                    except StopIteration:
                        finished.append(key)

                for key in finished:
                    del active_iters[key]
                    del term_events[key]
                    processes.pop(key, None)
                    active.release(key)
                    active.verify_complete(plan_context, key)

                yield from active.plan_events_iterator(plan_context)
        except Exception:
            if not stopping and active_iters:
                yield DagsterEvent.engine_event(
                    plan_context, "Unexpected exception while steps were still in-progress - terminating running steps:",
                    event_specific_data=EngineEventData(
                        metadata={"steps_interrupted": dg.MetadataValue.text(str(list(active_iters.keys())))},
                        error=serializable_error_info_from_exc_info(sys.exc_info())))
                for key, term_event in term_events.items():
                    if key in processes:
                        if processes[key].is_alive():
                            term_event.set()
                        del processes[key]
            raise

        errs = {pid: err for pid, err in errors.items() if err}
        if stopping and not active_iters and all(
                e.cls_name in {"DagsterExecutionInterruptedError", "KeyboardInterrupt"} for e in errs.values()):
            yield DagsterEvent.engine_event(plan_context, "exo local executor: interrupted all active child processes",
                                            event_specific_data=EngineEventData())
            raise DagsterExecutionInterruptedError()
        if errs:
            raise DagsterSubprocessError(
                "During multiprocess execution errors occurred in child processes:\n"
                + "\n".join(f"In process {pid}: {err.to_string()}" for pid, err in errs.items()),
                subprocess_error_infos=list(errs.values()))

    def _launch(self, multiproc_ctx, recon_job, step_context, step, errors, processes, term_events, known_state,
                repository_load_data, devices: tuple[str, ...]) -> Iterator[DagsterEvent | None]:
        """Dagster's `execute_step_out_of_process`, with the step's devices."""
        command = _StepWithDevices(
            run_config=step_context.run_config, dagster_run=step_context.dagster_run, step_key=step.key,
            instance_ref=step_context.instance.get_ref(), term_event=term_events[step.key], recon_pipeline=recon_job,
            retry_mode=self.retries, known_state=known_state, repository_load_data=repository_load_data, devices=devices,
        )
        shown = ",".join(devices) if devices else "none"
        what = f"GPU device(s) {shown}" if devices else "no GPU"
        yield DagsterEvent.step_worker_starting(
            step_context, f'Launching subprocess for "{step.key}" with {what} (CUDA_VISIBLE_DEVICES="{",".join(devices)}").',
            metadata={DEVICES_METADATA: dg.MetadataValue.text(shown), "CUDA_VISIBLE_DEVICES": dg.MetadataValue.text(",".join(devices))},
        )
        for ret in execute_child_process_command(multiproc_ctx, command):
            if ret is None or isinstance(ret, DagsterEvent):
                yield ret
            elif isinstance(ret, ChildProcessEvent):
                if isinstance(ret, ChildProcessSystemErrorEvent):
                    errors[ret.pid] = ret.error_info
            else:
                processes[step.key] = ret


_fields = MULTI_PROC_CONFIG.config_type.fields
EXO_LOCAL_CONFIG = {
    "max_concurrent": dg.Field(dg.Noneable(dg.Int), default_value=None,
                               description="CPU steps that may run at once (GPU steps are limited by devices instead). "
                                           "Default: the number of CPU cores."),
    "gpus": dg.Field(dg.Noneable([str]), default_value=None,
                     description=f"GPU device ids to hand out; default: {gpus.GPUS_ENV}, else CUDA_VISIBLE_DEVICES, else nvidia-smi."),
    "cpu_fallback": dg.Field(bool, default_value=False,
                             description="On a machine with no GPU at all, run GPU steps on CPU instead of failing the run."),
    "start_method": dg.Field(_fields["start_method"].config_type, is_required=False,
                             description="spawn or forkserver (default: forkserver, preloading the job's module, "
                                         "so a step process starts in milliseconds instead of re-importing everything)."),
    "tag_concurrency_limits": _fields["tag_concurrency_limits"],
    "retries": _fields["retries"],
    "step_dependency_config": _fields["step_dependency_config"],
}


@dg.executor(name="exo_local", config_schema=EXO_LOCAL_CONFIG, requirements=dg.multiple_process_executor_requirements())
def exo_local_executor(init_context) -> GpuAwareExecutor:
    """exo's local GPU-aware executor (the default of compiled cluster jobs)."""
    config = init_context.executor_config
    start = config.get("start_method") or {"forkserver": {}}
    method, start_cfg = next(iter(start.items()))
    if method == "forkserver" and "forkserver" not in multiprocessing.get_all_start_methods():
        method, start_cfg = "spawn", {}
    try:
        devices = gpus.detect(config.get("gpus"))
    except gpus.GpuConfigError as exc:
        raise DagsterUnmetExecutorRequirementsError(str(exc)) from None
    return GpuAwareExecutor(
        devices=devices,
        cpu_fallback=config["cpu_fallback"],
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
        start_method=method,
        explicit_forkserver_preload=(start_cfg or {}).get("preload_modules"),
        step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),
    )


EXECUTORS = ("local", "celery", "k8s")
EXECUTOR_ENV = "EXO_EXECUTOR"


def executor_for(name: str | None) -> dg.ExecutorDefinition:
    """The Dagster executor a cluster's `executor:` names; unnamed: the deployment's default
    (`EXO_EXECUTOR` when the code location loads), else exo's local executor."""
    if name is None:
        name = os.environ.get(EXECUTOR_ENV) or "local"
        if name not in EXECUTORS:
            raise ValueError(f"{EXECUTOR_ENV}={name!r} is not an executor; use one of: {', '.join(EXECUTORS)}")
    if name == "local":
        return exo_local_executor
    if name == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise ImportError("`executor: celery` needs dagster-celery: pip install 'exo-dagster[celery]'") from None
        return celery_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ImportError("`executor: k8s` needs dagster-k8s: pip install 'exo-dagster[k8s]'") from None
        return k8s_job_executor
    raise ValueError(f"unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}")
