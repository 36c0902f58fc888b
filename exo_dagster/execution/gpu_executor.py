"""The local GPU-aware executor: the embedded default for compiled cluster jobs.

Built on Dagster's multiprocess executor machinery (its `ActiveExecution` state machine, its
per-step child process command and event plumbing). What it adds:

- CPU steps (`exo/gpu: 0`) run in parallel processes, at most `max_concurrent` at a time, with
  `CUDA_VISIBLE_DEVICES=""` (they see no GPU at all).
- A GPU step (`exo/gpu: N`) holds a *lease* on N devices for as long as its compute runs (the
  satellite call, `device_leases.gpu_lease`): the process asks the executor, waits until N devices are
  free, runs with exactly those in `CUDA_VISIBLE_DEVICES`, and hands them back when the compute
  returns (or when the process dies). A device is leased to one step at a time, so no two steps
  ever compute on one device. GPU step processes are started ahead of time (at most as many
  waiting as there are devices), so Dagster's per-step start-up and bookkeeping (process fork,
  instance, events, writing the output) overlap other steps' GPU work instead of idling a GPU.
  The process starts with `CUDA_VISIBLE_DEVICES=""`: code that touches CUDA before its lease
  (e.g. a resource) finds no GPU, rather than silently sharing one.
- A step that asks for more devices than the executor has fails the run at launch, before any
  step runs, instead of waiting forever.

Devices come from the executor's `gpus` config, `EXO_GPUS`, or the machine (gpus.py). Every lease
is recorded as an engine event on the step with `exo/devices` and `exo/lease` (acquired/released)
metadata, so a run's log shows which step held which device when.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import dagster as dg

from exo_dagster import dagster_private, keys
from exo_dagster.dagster_private import (
    MULTI_PROC_CONFIG,
    ChildProcessCrashException,
    ChildProcessEvent,
    ChildProcessSystemErrorEvent,
    DagsterEvent,
    DagsterExecutionInterruptedError,
    DagsterSubprocessError,
    DagsterUnmetExecutorRequirementsError,
    EngineEventData,
    ExecutionPlan,
    InstanceConcurrencyContext,
    MultiprocessExecutor,
    PlanOrchestrationContext,
    RetryMode,
    SerializableErrorInfo,
    StepDependencyConfig,
    check,
    get_run_crash_explanation,
    serializable_error_info_from_exc_info,
)
from exo_dagster.execution import gpus
from exo_dagster.execution.device_leases import LOOKAHEAD, DevicePool, NotEnoughGpus, gpu_lease, gpus_needed  # noqa: F401
from exo_dagster.execution.step_process import StepCommand, child_events, instance_modules
from exo_dagster.execution.step_scheduler import DeviceScheduler

DEVICES_METADATA = keys.DEVICES
LEASE_METADATA = keys.LEASE
CPU_FALLBACK_ENV = "EXO_CPU_FALLBACK"
IDLE_SLEEP = 0.003  # seconds the orchestrator sleeps when no child had news (Dagster's default poll is 20 ms per child)


class GpuAwareExecutor(MultiprocessExecutor):
    """See the module docstring."""

    def __init__(
        self, *, devices: gpus.Devices, cpu_fallback: bool = False, gpu_lookahead: int = LOOKAHEAD, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.devices = devices
        self.cpu_fallback = cpu_fallback
        self.gpu_lookahead = gpu_lookahead

    def check_requests(self, execution_plan: ExecutionPlan) -> None:
        """Fail before anything runs when some step can never get its GPUs."""
        if self.cpu_fallback and not self.devices.ids:
            return
        too_big = [
            (s.key, gpus_needed(s))
            for s in execution_plan.get_steps_to_execute_in_topo_order()
            if gpus_needed(s) > len(self.devices)
        ]
        if too_big:
            asks = ", ".join(f"`{key}` asks for {n}" for key, n in too_big)
            raise NotEnoughGpus(
                f"not enough GPUs for this run: {asks}, but this executor has {self.devices.describe()}. "
                f"fix: lower the step's `resources: {{gpu: N}}`, run on a machine with more GPUs, "
                f"list devices in {gpus.GPUS_ENV} (e.g. {gpus.GPUS_ENV}=0,1) or the executor's `gpus` config, "
                f"or, to run GPU steps on CPU where there is no GPU at all, set {CPU_FALLBACK_ENV}=1 "
                f"(or the executor's `cpu_fallback: true`)"
            )

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        check.inst_param(plan_context, "plan_context", PlanOrchestrationContext)
        self.check_requests(execution_plan)
        job = plan_context.reconstructable_job
        multiproc_ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":
            module = job.get_module()
            preload = self._explicit_forkserver_preload or ([module] if module else ["dagster"])
            multiproc_ctx.set_forkserver_preload(
                list(
                    dict.fromkeys(
                        [
                            dagster_private.MULTIPROCESS_MODULE,
                            __name__,
                            "exo_dagster.execution.step_process",
                            *instance_modules(plan_context.instance.get_ref()),
                            *preload,
                        ]
                    )
                )
            )

        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps using exo's GPU-aware local executor: {self.devices.describe()}"
            f"{' (GPU steps fall back to CPU)' if self.cpu_fallback and not self.devices.ids else ''}, "
            f"up to {self._max_concurrent} CPU step(s) at once (pid: {os.getpid()})",
            event_specific_data=EngineEventData.multiprocess(
                os.getpid(), step_keys_to_execute=execution_plan.step_keys_to_execute
            ),
        )
        leases = DevicePool(self.devices, self.cpu_fallback, self.gpu_lookahead)
        with ExitStack() as stack:
            concurrency = stack.enter_context(
                InstanceConcurrencyContext(plan_context.instance, plan_context.dagster_run)
            )
            active = stack.enter_context(
                DeviceScheduler(
                    execution_plan,
                    retry_mode=self.retries,
                    max_concurrent=self._max_concurrent,
                    tag_concurrency_limits=self._tag_concurrency_limits,
                    instance_concurrency_context=concurrency,
                    step_dependency_config=self.step_dependency_config,
                    leases=leases,
                )
            )
            yield from self._loop(plan_context, execution_plan, active, leases, multiproc_ctx)

    def _lease_event(
        self, plan_context, active, key: str, what: str, devices: tuple[str, ...], when: float
    ) -> DagsterEvent:
        shown = ",".join(devices) or "none"
        verb = {"acquired": "holds", "released": "released"}[what]
        return DagsterEvent.engine_event(
            plan_context.for_step(active.get_step_by_key(key)),
            f'Step "{key}" {verb} GPU device(s) {shown}.',
            EngineEventData(
                metadata={
                    DEVICES_METADATA: dg.MetadataValue.text(shown),
                    LEASE_METADATA: dg.MetadataValue.text(what),
                    "at": dg.MetadataValue.float(when),
                }
            ),
        )

    def _loop(
        self, plan_context, execution_plan, active: DeviceScheduler, leases: DevicePool, multiproc_ctx
    ) -> Iterator[DagsterEvent]:
        """Dagster's multiprocess loop (dagster/_core/executor/multiprocess.py), plus device leases."""
        job = plan_context.reconstructable_job
        active_iters: dict[str, Iterator[Any]] = {}
        errors: dict[int, SerializableErrorInfo] = {}
        processes: dict[str, Any] = {}
        term_events: dict[str, Any] = {}
        stopping = False
        try:
            while (not stopping and not active.is_complete) or active_iters:
                if active.check_for_interrupts():
                    yield DagsterEvent.engine_event(
                        plan_context,
                        "exo local executor: received termination signal - forwarding to active child processes",
                        EngineEventData.interrupted(list(active_iters.keys())),
                    )
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
                        term_events[step.key] = multiproc_ctx.Event()
                        child_conn = None
                        if leases.needs(step):  # registered now, so the next pick already counts it as waiting
                            parent_conn, child_conn = multiproc_ctx.Pipe()
                            leases.started(step.key, leases.needs(step), parent_conn)
                        active_iters[step.key] = self._launch(
                            multiproc_ctx,
                            job,
                            plan_context.for_step(step),
                            step,
                            errors,
                            processes,
                            term_events,
                            active.get_known_state(),
                            execution_plan.repository_load_data,
                            leases.needs(step),
                            child_conn,
                        )

                busy = False
                for key, what, devices, when in leases.poll():
                    busy = True
                    yield self._lease_event(plan_context, active, key, what, devices, when)

                finished = []
                for key, step_iter in active_iters.items():
                    try:
                        event = next(step_iter)
                        if event is None:
                            continue
                        busy = True
                        if not isinstance(event, DagsterEvent):
                            continue
                        yield event
                        active.handle_event(event)
                        if event.is_resource_init_failure:
                            step_context = plan_context.for_step(active.get_step_by_key(key))
                            init_error = event.engine_event_data.error
                            assert init_error is not None, "Dagster's resource init failure event carries its error"
                            failure = self.log_failure_or_retry_event_after_error(
                                step_context, init_error, active.get_known_state()
                            )
                            yield failure
                            active.handle_event(failure)
                    except ChildProcessCrashException as crash:
                        assert crash.exit_code is not None, "Dagster raises it once the child process has exited"
                        error = serializable_error_info_from_exc_info(sys.exc_info())
                        step_context = plan_context.for_step(active.get_step_by_key(key))
                        yield DagsterEvent.engine_event(
                            step_context,
                            get_run_crash_explanation(
                                prefix=f"exo local executor: child process for step {key}", exit_code=crash.exit_code
                            ),
                            EngineEventData.engine_error(error),
                        )
                        failure = self.log_failure_or_retry_event_after_error(
                            step_context, error, active.get_known_state()
                        )
                        active.handle_event(failure)
                        yield failure
                        finished.append(key)
                        if failure.is_step_failure:
                            errors[crash.pid] = error
                    except StopIteration:
                        finished.append(key)

                for key in finished:
                    busy = True
                    del active_iters[key]
                    del term_events[key]
                    processes.pop(key, None)
                    freed = leases.finished(key)
                    if freed is not None:
                        yield self._lease_event(plan_context, active, key, "released", freed, time.time())
                    active.verify_complete(plan_context, key)

                yield from active.plan_events_iterator(plan_context)
                if not busy:
                    time.sleep(IDLE_SLEEP)
        except Exception:
            if not stopping and active_iters:
                yield DagsterEvent.engine_event(
                    plan_context,
                    "Unexpected exception while steps were still in-progress - terminating running steps:",
                    event_specific_data=EngineEventData(
                        metadata={"steps_interrupted": dg.MetadataValue.text(str(list(active_iters.keys())))},
                        error=serializable_error_info_from_exc_info(sys.exc_info()),
                    ),
                )
                for key, term_event in term_events.items():
                    if key in processes:
                        if processes[key].is_alive():
                            term_event.set()
                        del processes[key]
            raise

        errs = {pid: err for pid, err in errors.items() if err}
        if (
            stopping
            and not active_iters
            and all(e.cls_name in {"DagsterExecutionInterruptedError", "KeyboardInterrupt"} for e in errs.values())
        ):
            yield DagsterEvent.engine_event(
                plan_context,
                "exo local executor: interrupted all active child processes",
                event_specific_data=EngineEventData(),
            )
            raise DagsterExecutionInterruptedError()
        if errs:
            raise DagsterSubprocessError(
                "During multiprocess execution errors occurred in child processes:\n"
                + "\n".join(f"In process {pid}: {err.to_string()}" for pid, err in errs.items()),
                subprocess_error_infos=list(errs.values()),
            )

    def _launch(
        self,
        multiproc_ctx,
        recon_job,
        step_context,
        step,
        errors,
        processes,
        term_events,
        known_state,
        repository_load_data,
        need: int,
        child_conn: Any,
    ) -> Iterator[Any]:
        """Dagster's `execute_step_out_of_process`, with a lease channel for GPU steps."""
        command = StepCommand(
            run_config=step_context.run_config,
            dagster_run=step_context.dagster_run,
            step_key=step.key,
            instance_ref=step_context.instance.get_ref(),
            term_event=term_events[step.key],
            recon_pipeline=recon_job,
            retry_mode=self.retries,
            known_state=known_state,
            repository_load_data=repository_load_data,
            lease_conn=child_conn,
            need=need,
            env=os.environ,
        )
        what = f"a lease on {need} GPU device(s)" if need else "no GPU"
        yield DagsterEvent.step_worker_starting(
            step_context,
            f'Launching subprocess for "{step.key}" with {what}.',
            metadata={keys.GPU: dg.MetadataValue.int(need)},
        )
        try:
            for ret in child_events(multiproc_ctx, command):
                if ret is None or isinstance(ret, DagsterEvent):
                    yield ret
                elif isinstance(ret, ChildProcessEvent):
                    if isinstance(ret, ChildProcessSystemErrorEvent):
                        errors[ret.pid] = ret.error_info
                    yield True  # news, but nothing to log
                else:
                    processes[step.key] = ret
                    if child_conn is not None:
                        child_conn.close()  # the child has its own copy now
        finally:
            if child_conn is not None and not child_conn.closed:
                child_conn.close()


_multiprocess_shape = MULTI_PROC_CONFIG.config_type
assert isinstance(_multiprocess_shape, dg.Shape), "Dagster's multiprocess executor config is a Shape of fields"
_fields = _multiprocess_shape.fields
EXO_LOCAL_CONFIG = {
    "max_concurrent": dg.Field(
        dg.Noneable(dg.Int),
        default_value=None,
        description="CPU steps that may run at once (GPU steps are limited by devices instead). "
        "Default: the number of CPU cores.",
    ),
    "gpus": dg.Field(
        dg.Noneable([str]),
        default_value=None,
        description=f"GPU device ids to hand out; default: {gpus.GPUS_ENV}, else CUDA_VISIBLE_DEVICES, else "
        "nvidia-smi.",
    ),
    "cpu_fallback": dg.Field(
        dg.Noneable(bool),
        default_value=None,
        description="On a machine with no GPU at all, run GPU steps on CPU instead of failing the run. "
        f"Default: on (the embedded default needs no GPU); {CPU_FALLBACK_ENV}=0 turns it off. "
        "Where GPUs exist, a step asking for more than there are always fails at launch.",
    ),
    "gpu_lookahead": dg.Field(
        dg.Int,
        default_value=LOOKAHEAD,
        description="GPU step processes started ahead, per device, so Dagster's per-step set-up "
        "overlaps other steps' GPU work (1 = one waiting step per device).",
    ),
    "start_method": dg.Field(
        _fields["start_method"].config_type,
        is_required=False,
        description="spawn or forkserver (default: forkserver, preloading the job's module and the "
        "instance's storage modules, so a step process starts in a fraction of a second).",
    ),
    "tag_concurrency_limits": _fields["tag_concurrency_limits"],
    "retries": _fields["retries"],
    "step_dependency_config": _fields["step_dependency_config"],
}


def cpu_fallback_enabled(configured: bool | None) -> bool:
    """Run config wins; else EXO_CPU_FALLBACK (0/false/no turns it off); else on."""
    if configured is not None:
        return configured
    return os.environ.get(CPU_FALLBACK_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


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
        cpu_fallback=cpu_fallback_enabled(config["cpu_fallback"]),
        gpu_lookahead=config["gpu_lookahead"],
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config.get("max_concurrent"),
        tag_concurrency_limits=config.get("tag_concurrency_limits"),
        start_method=method,
        explicit_forkserver_preload=(start_cfg or {}).get("preload_modules"),
        step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),
    )
