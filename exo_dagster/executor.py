"""The local GPU-aware executor: the embedded default for compiled cluster jobs.

Built on Dagster's multiprocess executor machinery (its `ActiveExecution` state machine, its
per-step child process command and event plumbing). What it adds:

- CPU steps (`exo/gpu: 0`) run in parallel processes, at most `max_concurrent` at a time, with
  `CUDA_VISIBLE_DEVICES=""` (they see no GPU at all).
- A GPU step (`exo/gpu: N`) holds a *lease* on N devices for as long as its compute runs (the
  satellite call, `gpu_lease` below): the process asks the executor, waits until N devices are
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

import collections
import contextlib
import multiprocessing
import os
import queue
import sys
import time
from contextlib import ExitStack
from typing import Any, Iterator, Mapping, Sequence

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
    ChildProcessDoneEvent,
    ChildProcessEvent,
    ChildProcessSystemErrorEvent,
    _execute_command_in_child_process,
)
from dagster._core.executor.multiprocess import MultiprocessExecutor, MultiprocessExecutorChildProcessCommand
from dagster._core.storage.tags import PRIORITY_TAG
from dagster._utils import get_run_crash_explanation
from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info
from dagster._utils.tags import TagConcurrencyLimitsCounter

from . import gpus
from .tags import GPU_TAG

DEVICES_METADATA = "exo/devices"
LEASE_METADATA = "exo/lease"
CPU_FALLBACK_ENV = "EXO_CPU_FALLBACK"
LOOKAHEAD = 2  # default: GPU step processes started ahead of a free device, per device
IDLE_SLEEP = 0.003  # seconds the orchestrator sleeps when no child had news (Dagster's default poll is 20 ms per child)


class NotEnoughGpus(DagsterUnmetExecutorRequirementsError):
    """A step asks for more GPUs than the executor can ever give it."""


def gpus_needed(step: ExecutionStep) -> int:
    raw = step.tags.get(GPU_TAG, "0")
    try:
        return max(int(raw), 0)
    except ValueError:
        raise NotEnoughGpus(f"step `{step.key}` has op tag {GPU_TAG}={raw!r}; it must be a whole number of GPUs") from None


# --------------------------------------------------------------------------- inside a step process

_CHILD_LEASE: "_ChildLease | None" = None


class _ChildLease:
    """The step process's end of its lease channel to the orchestrator."""

    def __init__(self, conn: Any, need: int, term_event: Any):
        self.conn, self.need, self.term_event = conn, need, term_event

    def acquire(self) -> tuple[str, ...]:
        self.conn.send(("acquire", self.need))
        while not self.conn.poll(0.05):  # wake up now and then, so a run termination is not stuck here
            if self.term_event.is_set():
                raise DagsterExecutionInterruptedError("run terminated while waiting for a GPU")
        return tuple(self.conn.recv())

    def release(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.conn.send(("release", self.need))


@contextlib.contextmanager
def gpu_lease() -> Iterator[tuple[str, ...] | None]:
    """Wrap a GPU step's compute: wait for its devices, expose them as CUDA_VISIBLE_DEVICES, give them back.

    Outside exo's local executor (in-process, Celery, Kubernetes) this does nothing: those
    backends place GPU steps by queue or pod limits, and the device set is the worker's own.
    """
    lease = _CHILD_LEASE
    if lease is None or not lease.need:
        yield None
        return
    devices = lease.acquire()  # the orchestrator records the lease as an engine event on this step
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    try:
        yield devices
    finally:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        lease.release()


class _StepCommand(MultiprocessExecutorChildProcessCommand):
    """Dagster's per-step child command; GPU steps also get their end of a lease channel.

    It carries the orchestrator's environment: a forkserver child would otherwise inherit the
    environment of whichever run started the forkserver (DAGSTER_HOME, EXO_DATA_DIR, secrets...).
    """

    def __init__(self, *args: Any, lease_conn: Any = None, need: int = 0, env: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lease_conn, self.need, self.env = lease_conn, need, dict(env) if env is not None else None

    def execute(self) -> Iterator[DagsterEvent]:
        global _CHILD_LEASE
        if self.env is not None:
            os.environ.clear()
            os.environ.update(self.env)
        # Before any user code can import CUDA: no GPU until (and unless) the step holds a lease.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        _CHILD_LEASE = _ChildLease(self.lease_conn, self.need, self.term_event) if self.lease_conn is not None else None
        yield from super().execute()


# --------------------------------------------------------------------------- in the orchestrator


class _Leases:
    """Device bookkeeping: free ids, who holds what, who waits (first come, first served)."""

    def __init__(self, devices: gpus.Devices, cpu_fallback: bool, lookahead: int = LOOKAHEAD):
        self.fallback = cpu_fallback and not devices.ids
        self.lookahead = max(lookahead, 1)
        self.free = list(devices.ids)
        self.capacity = len(devices.ids)
        self.need: dict[str, int] = {}
        self.conns: dict[str, Any] = {}
        self.holding: dict[str, tuple[str, ...]] = {}
        self.done: set[str] = set()  # gave their devices back; the process is finishing its bookkeeping
        self.waiting: collections.deque[str] = collections.deque()

    def needs(self, step: ExecutionStep) -> int:
        return 0 if self.fallback else gpus_needed(step)

    def can_start(self, need: int) -> bool:
        """Start a GPU step's process early, but only while the ones not yet holding devices would fill
        them at most `lookahead` times over: a step process needs about a second of Dagster set-up before
        it can compute, so it should be ready when a device frees up, not start then."""
        pending = sum(n for key, n in self.need.items() if key not in self.holding and key not in self.done)
        return pending + need <= self.lookahead * self.capacity

    def started(self, step_key: str, need: int, conn: Any) -> None:
        self.need[step_key], self.conns[step_key] = need, conn

    def poll(self) -> list[tuple[str, str, tuple[str, ...], float]]:
        """Handle the children's messages and grant what fits: [(step_key, "acquired"|"released", devices, when)]."""
        changes = []
        for key, conn in list(self.conns.items()):
            try:
                while conn.poll():
                    kind, _ = conn.recv()
                    if kind == "acquire" and key not in self.holding and key not in self.waiting:
                        self.waiting.append(key)
                    elif kind == "release" and key in self.holding:
                        self.done.add(key)
                        changes.append((key, "released", self._give_back(key), time.time()))
            except (EOFError, OSError):
                continue  # the process is gone; `finished` releases what it held
        while self.waiting and self.need[self.waiting[0]] <= len(self.free):
            key = self.waiting.popleft()
            n = self.need[key]
            ids, self.free = tuple(self.free[:n]), self.free[n:]
            self.holding[key] = ids
            granted = time.time()  # before the child can start computing
            try:
                self.conns[key].send(list(ids))
            except (OSError, EOFError):
                pass
            changes.append((key, "acquired", ids, granted))
        return changes

    def _give_back(self, key: str) -> tuple[str, ...]:
        ids = self.holding.pop(key)
        self.free.extend(ids)
        return ids

    def finished(self, key: str) -> tuple[str, ...] | None:
        """The step's process exited: anything it still held is free again."""
        if key in self.waiting:
            self.waiting.remove(key)
        conn = self.conns.pop(key, None)
        if conn is not None:
            conn.close()
        self.need.pop(key, None)
        self.done.discard(key)
        return self._give_back(key) if key in self.holding else None


class _DeviceScheduler(ActiveExecution):
    """Dagster's ActiveExecution, choosing CPU steps by free CPU slots and GPU steps by devices."""

    def __init__(self, *args: Any, leases: _Leases, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.leases = leases

    def get_steps_to_execute(self, limit: int | None = None) -> Sequence[ExecutionStep]:
        check.invariant(self._context_guard, "ActiveExecution must be used as a context manager")
        self._update()
        steps = sorted((self.get_step_by_key(k) for k in self._executable), key=self._sort_key_fn)
        counter = (TagConcurrencyLimitsCounter(self._tag_concurrency_limits, [self.get_step_by_key(k) for k in self._in_flight])
                   if self._tag_concurrency_limits else None)
        cpu_running = sum(1 for k in self._in_flight if not self.leases.needs(self.get_step_by_key(k)))
        batch: list[ExecutionStep] = []
        planned: dict[str, int] = {}
        for step in steps:
            need = self.leases.needs(step)
            if need and not self.leases.can_start(need + sum(planned.values())):
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
            if need:
                planned[step.key] = need
            else:
                cpu_running += 1
            batch.append(step)
        for step in batch:
            self._in_flight.add(step.key)
            self._executable.remove(step.key)
            self._prep_for_dynamic_outputs(step)
        return batch


def _child_events(ctx: Any, command: _StepCommand) -> Iterator[Any]:
    """Dagster's `execute_child_process_command`, polling without blocking (the loop sleeps once per pass)."""
    events = ctx.Queue()
    try:
        process = ctx.Process(target=_execute_command_in_child_process, args=(events, command))
        process.start()
        yield process
        completed = False
        while not completed:
            try:
                event = events.get_nowait()
            except queue.Empty:
                if process.is_alive():
                    yield None
                    continue
                try:
                    event = events.get(timeout=0.05)  # the last events may still be in the pipe
                except queue.Empty:
                    break
            yield event
            completed = isinstance(event, (ChildProcessDoneEvent, ChildProcessSystemErrorEvent))
        if not completed:
            raise ChildProcessCrashException(pid=process.pid, exit_code=process.exitcode)
        while process.is_alive():  # the step is done; let the loop start the next ones while this process exits
            yield None
        process.join()
    finally:
        events.close()


def instance_modules(ref: Any) -> list[str]:
    """Modules of the instance's storages, launcher, etc.: importing them costs a step process ~1 s
    on a small machine, so the forkserver imports them once instead."""
    modules = []
    for name in ref._fields:
        module = getattr(getattr(ref, name), "module_name", None)
        if isinstance(module, str):
            modules.append(module)
    return modules


class GpuAwareExecutor(MultiprocessExecutor):
    """See the module docstring."""

    def __init__(self, *, devices: gpus.Devices, cpu_fallback: bool = False, gpu_lookahead: int = LOOKAHEAD, **kwargs: Any):
        super().__init__(**kwargs)
        self.devices = devices
        self.cpu_fallback = cpu_fallback
        self.gpu_lookahead = gpu_lookahead

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
                f"or, to run GPU steps on CPU where there is no GPU at all, set {CPU_FALLBACK_ENV}=1 "
                f"(or the executor's `cpu_fallback: true`)")

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        check.inst_param(plan_context, "plan_context", PlanOrchestrationContext)
        self.check_requests(execution_plan)
        job = plan_context.reconstructable_job
        multiproc_ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":
            module = job.get_module()
            preload = self._explicit_forkserver_preload or ([module] if module else ["dagster"])
            multiproc_ctx.set_forkserver_preload(list(dict.fromkeys([
                "dagster._core.executor.multiprocess", __name__,
                *instance_modules(plan_context.instance.get_ref()), *preload])))

        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps using exo's GPU-aware local executor: {self.devices.describe()}"
            f"{' (GPU steps fall back to CPU)' if self.cpu_fallback and not self.devices.ids else ''}, "
            f"up to {self._max_concurrent} CPU step(s) at once (pid: {os.getpid()})",
            event_specific_data=EngineEventData.multiprocess(os.getpid(), step_keys_to_execute=execution_plan.step_keys_to_execute),
        )
        leases = _Leases(self.devices, self.cpu_fallback, self.gpu_lookahead)
        with ExitStack() as stack:
            concurrency = stack.enter_context(InstanceConcurrencyContext(plan_context.instance, plan_context.dagster_run))
            active = stack.enter_context(_DeviceScheduler(
                execution_plan, retry_mode=self.retries, max_concurrent=self._max_concurrent,
                tag_concurrency_limits=self._tag_concurrency_limits, instance_concurrency_context=concurrency,
                step_dependency_config=self.step_dependency_config, leases=leases,
            ))
            yield from self._loop(plan_context, execution_plan, active, leases, multiproc_ctx)

    def _lease_event(self, plan_context, active, key: str, what: str, devices: tuple[str, ...], when: float) -> DagsterEvent:
        shown = ",".join(devices) or "none"
        verb = {"acquired": "holds", "released": "released"}[what]
        return DagsterEvent.engine_event(
            plan_context.for_step(active.get_step_by_key(key)),
            f'Step "{key}" {verb} GPU device(s) {shown}.',
            EngineEventData(metadata={DEVICES_METADATA: dg.MetadataValue.text(shown), LEASE_METADATA: dg.MetadataValue.text(what),
                                      "at": dg.MetadataValue.float(when)}),
        )

    def _loop(self, plan_context, execution_plan, active: _DeviceScheduler, leases: _Leases, multiproc_ctx) -> Iterator[DagsterEvent]:
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
                        term_events[step.key] = multiproc_ctx.Event()
                        child_conn = None
                        if leases.needs(step):  # registered now, so the next pick already counts it as waiting
                            parent_conn, child_conn = multiproc_ctx.Pipe()
                            leases.started(step.key, leases.needs(step), parent_conn)
                        active_iters[step.key] = self._launch(multiproc_ctx, job, plan_context.for_step(step), step, errors,
                                                              processes, term_events, active.get_known_state(),
                                                              execution_plan.repository_load_data, leases.needs(step),
                                                              child_conn)

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
                repository_load_data, need: int, child_conn: Any) -> Iterator[Any]:
        """Dagster's `execute_step_out_of_process`, with a lease channel for GPU steps."""
        command = _StepCommand(
            run_config=step_context.run_config, dagster_run=step_context.dagster_run, step_key=step.key,
            instance_ref=step_context.instance.get_ref(), term_event=term_events[step.key], recon_pipeline=recon_job,
            retry_mode=self.retries, known_state=known_state, repository_load_data=repository_load_data,
            lease_conn=child_conn, need=need, env=os.environ,
        )
        what = f"a lease on {need} GPU device(s)" if need else "no GPU"
        yield DagsterEvent.step_worker_starting(
            step_context, f'Launching subprocess for "{step.key}" with {what}.',
            metadata={"exo/gpu": dg.MetadataValue.int(need)},
        )
        try:
            for ret in _child_events(multiproc_ctx, command):
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


_fields = MULTI_PROC_CONFIG.config_type.fields
EXO_LOCAL_CONFIG = {
    "max_concurrent": dg.Field(dg.Noneable(dg.Int), default_value=None,
                               description="CPU steps that may run at once (GPU steps are limited by devices instead). "
                                           "Default: the number of CPU cores."),
    "gpus": dg.Field(dg.Noneable([str]), default_value=None,
                     description=f"GPU device ids to hand out; default: {gpus.GPUS_ENV}, else CUDA_VISIBLE_DEVICES, else nvidia-smi."),
    "cpu_fallback": dg.Field(dg.Noneable(bool), default_value=None,
                             description="On a machine with no GPU at all, run GPU steps on CPU instead of failing the run. "
                                         f"Default: on (the embedded default needs no GPU); {CPU_FALLBACK_ENV}=0 turns it off. "
                                         "Where GPUs exist, a step asking for more than there are always fails at launch."),
    "gpu_lookahead": dg.Field(dg.Int, default_value=LOOKAHEAD,
                              description="GPU step processes started ahead, per device, so Dagster's per-step set-up "
                                          "overlaps other steps' GPU work (1 = one waiting step per device)."),
    "start_method": dg.Field(_fields["start_method"].config_type, is_required=False,
                             description="spawn or forkserver (default: forkserver, preloading the job's module and the "
                                         "instance's storage modules, so a step process starts in a fraction of a second)."),
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


EXECUTORS = ("local", "in-process", "celery", "k8s")
EXECUTOR_ENV = "EXO_EXECUTOR"


def resolve_executor_name(name: str | None, *, chain_on_cpu: bool = False) -> str:
    """A cluster's `executor:`, else `EXO_EXECUTOR`, else `in-process` for a chain of CPU steps, else `local`."""
    if name is None:
        name = os.environ.get(EXECUTOR_ENV) or ("in-process" if chain_on_cpu else "local")
        if name not in EXECUTORS:
            raise ValueError(f"{EXECUTOR_ENV}={name!r} is not an executor; use one of: {', '.join(EXECUTORS)}")
    return name


def executor_for(name: str | None, *, chain_on_cpu: bool = False) -> dg.ExecutorDefinition:
    """The Dagster executor a cluster's `executor:` names; unnamed: the deployment's default
    (`EXO_EXECUTOR` when the code location loads), else `in-process` for a chain of CPU steps
    (`chain_on_cpu`: a sequential cluster with no GPU step and no fan-out, where step processes would
    add about 0.6 s a step and no parallelism), else exo's local GPU-aware executor."""
    name = resolve_executor_name(name, chain_on_cpu=chain_on_cpu)
    if name == "local":
        return exo_local_executor
    if name == "in-process":
        return dg.in_process_executor
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
