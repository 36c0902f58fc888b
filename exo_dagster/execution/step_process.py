"""Running one step in its own process: Dagster's per-step child command, carrying the lease channel
and the orchestrator's environment, and the polling of its events."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator, Mapping
from typing import Any

from exo_dagster.dagster_private import (
    ChildProcessCrashException,
    ChildProcessDoneEvent,
    ChildProcessSystemErrorEvent,
    DagsterEvent,
    DagsterExecutionInterruptedError,
    MultiprocessExecutorChildProcessCommand,
    execute_command_in_child_process,
)
from exo_dagster.execution import device_leases
from exo_dagster.sdk.internal import step_limit


class StepCommand(MultiprocessExecutorChildProcessCommand):
    """Dagster's per-step child command; GPU steps also get their end of a lease channel.

    It carries the orchestrator's environment: a forkserver child would otherwise inherit the
    environment of whichever run started the forkserver (DAGSTER_HOME, EXO_DATA_DIR, secrets...).
    """

    def __init__(
        self, *args: Any, lease_conn: Any = None, need: int = 0, env: Mapping[str, str] | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.lease_conn, self.need, self.env = lease_conn, need, dict(env) if env is not None else None

    def execute(self) -> Iterator[DagsterEvent]:
        if self.env is not None:
            os.environ.clear()
            os.environ.update(self.env)
        # Before any user code can import CUDA: no GPU until (and unless) the step holds a lease.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        device_leases.set_child_lease(self.lease_conn, self.need, self.term_event)
        # Dagster stops a step process with SIGINT, which a running DuckDB query never sees: interrupt DuckDB too
        step_limit.start_quiet_thread(_stop_duckdb_on, self.term_event, name="exo-stop-duckdb")
        yield from super().execute()


def _stop_duckdb_on(term_event: Any) -> None:
    term_event.wait()
    step_limit.interrupt_all(DagsterExecutionInterruptedError("the run was stopped"))  # as Dagster's own SIGINT


def child_events(ctx: Any, command: StepCommand) -> Iterator[Any]:
    """Dagster's `execute_child_process_command`, polling without blocking (the loop sleeps once per pass)."""
    events = ctx.Queue()
    try:
        process = ctx.Process(target=execute_command_in_child_process, args=(events, command))
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
