"""Every private Dagster name exo uses, in one place.

exo's executor, launcher and run guard extend Dagster's own machinery (the multiprocess executor,
its step scheduler, the run launcher base), which Dagster does not export publicly. They import
those names from here and nowhere else, so a Dagster upgrade that moves one breaks this file only:
`tests/exo_dagster/test_dagster_private.py` resolves every name below and says which moved.

Names resolve on first use (PEP 562), so importing this module costs nothing. The type checker
reads the same names from the `TYPE_CHECKING` imports below instead, so every use is typed; the
test checks that block and `NAMES` name the same things.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what pyright sees; at run time each name comes from NAMES through __getattr__
    import dagster._check as check
    import dagster._core.storage.runs.sqlite.sqlite_run_storage as sqlite_run_storage_module
    from dagster._core.definitions.executor_definition import MULTI_PROC_CONFIG
    from dagster._core.errors import (
        DagsterExecutionInterruptedError,
        DagsterSubprocessError,
        DagsterUnmetExecutorRequirementsError,
    )
    from dagster._core.events import DagsterEvent, EngineEventData
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.active import ActiveExecution
    from dagster._core.execution.plan.active import _pool_key_for_step as pool_key_for_step
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
    from dagster._core.execution.plan.plan import ExecutionPlan
    from dagster._core.execution.plan.step import ExecutionStep
    from dagster._core.execution.retries import RetryMode
    from dagster._core.execution.step_dependency_config import StepDependencyConfig
    from dagster._core.executor.base import Executor
    from dagster._core.executor.child_process_executor import (
        ChildProcessCrashException,
        ChildProcessDoneEvent,
        ChildProcessEvent,
        ChildProcessSystemErrorEvent,
    )
    from dagster._core.executor.child_process_executor import (
        _execute_command_in_child_process as execute_command_in_child_process,
    )
    from dagster._core.executor.in_process import InProcessExecutor
    from dagster._core.executor.multiprocess import MultiprocessExecutor, MultiprocessExecutorChildProcessCommand
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.launcher.base import (
        CheckRunHealthResult,
        LaunchRunContext,
        ResumeRunContext,
        RunLauncher,
        WorkerStatus,
    )
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
    from dagster._core.storage.sql import get_alembic_config
    from dagster._core.storage.tags import PRIORITY_TAG
    from dagster._core.types.dagster_type import resolve_dagster_type
    from dagster._serdes import ConfigurableClass, ConfigurableClassData
    from dagster._utils import get_run_crash_explanation
    from dagster._utils.error import serializable_error_info_from_exc_info
    from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string
    from dagster._utils.tags import TagConcurrencyLimitsCounter
    from dagster_shared.error import SerializableErrorInfo

# name -> (module, attribute); attribute None: the module itself
NAMES: dict[str, tuple[str, str | None]] = {
    # executor machinery (execution/gpu_executor.py, step_process.py, step_scheduler.py, device_leases.py)
    "check": ("dagster._check", None),
    "MULTI_PROC_CONFIG": ("dagster._core.definitions.executor_definition", "MULTI_PROC_CONFIG"),
    "DagsterExecutionInterruptedError": ("dagster._core.errors", "DagsterExecutionInterruptedError"),
    "DagsterSubprocessError": ("dagster._core.errors", "DagsterSubprocessError"),
    "DagsterUnmetExecutorRequirementsError": ("dagster._core.errors", "DagsterUnmetExecutorRequirementsError"),
    "DagsterEvent": ("dagster._core.events", "DagsterEvent"),
    "EngineEventData": ("dagster._core.events", "EngineEventData"),
    "PlanOrchestrationContext": ("dagster._core.execution.context.system", "PlanOrchestrationContext"),
    "ActiveExecution": ("dagster._core.execution.plan.active", "ActiveExecution"),
    "pool_key_for_step": ("dagster._core.execution.plan.active", "_pool_key_for_step"),
    "InstanceConcurrencyContext": (
        "dagster._core.execution.plan.instance_concurrency_context",
        "InstanceConcurrencyContext",
    ),
    "ExecutionPlan": ("dagster._core.execution.plan.plan", "ExecutionPlan"),
    "ExecutionStep": ("dagster._core.execution.plan.step", "ExecutionStep"),
    "RetryMode": ("dagster._core.execution.retries", "RetryMode"),
    "StepDependencyConfig": ("dagster._core.execution.step_dependency_config", "StepDependencyConfig"),
    "ChildProcessCrashException": ("dagster._core.executor.child_process_executor", "ChildProcessCrashException"),
    "ChildProcessDoneEvent": ("dagster._core.executor.child_process_executor", "ChildProcessDoneEvent"),
    "ChildProcessEvent": ("dagster._core.executor.child_process_executor", "ChildProcessEvent"),
    "ChildProcessSystemErrorEvent": ("dagster._core.executor.child_process_executor", "ChildProcessSystemErrorEvent"),
    "execute_command_in_child_process": (
        "dagster._core.executor.child_process_executor",
        "_execute_command_in_child_process",
    ),
    # storage/intermediates.py: Dagster's own pickle IO manager (UPath), on a remote base path
    "PickledObjectFilesystemIOManager": ("dagster._core.storage.fs_io_manager", "PickledObjectFilesystemIOManager"),
    "MultiprocessExecutor": ("dagster._core.executor.multiprocess", "MultiprocessExecutor"),
    "MultiprocessExecutorChildProcessCommand": (
        "dagster._core.executor.multiprocess",
        "MultiprocessExecutorChildProcessCommand",
    ),
    "Executor": ("dagster._core.executor.base", "Executor"),
    "InProcessExecutor": ("dagster._core.executor.in_process", "InProcessExecutor"),
    "PRIORITY_TAG": ("dagster._core.storage.tags", "PRIORITY_TAG"),
    "get_run_crash_explanation": ("dagster._utils", "get_run_crash_explanation"),
    "SerializableErrorInfo": ("dagster_shared.error", "SerializableErrorInfo"),  # where dagster._utils.error gets it
    "serializable_error_info_from_exc_info": ("dagster._utils.error", "serializable_error_info_from_exc_info"),
    "TagConcurrencyLimitsCounter": ("dagster._utils.tags", "TagConcurrencyLimitsCounter"),
    # the routing run launcher (execution/routing_launcher.py)
    "CheckRunHealthResult": ("dagster._core.launcher.base", "CheckRunHealthResult"),
    "LaunchRunContext": ("dagster._core.launcher.base", "LaunchRunContext"),
    "ResumeRunContext": ("dagster._core.launcher.base", "ResumeRunContext"),
    "RunLauncher": ("dagster._core.launcher.base", "RunLauncher"),
    "WorkerStatus": ("dagster._core.launcher.base", "WorkerStatus"),
    "DagsterRun": ("dagster._core.storage.dagster_run", "DagsterRun"),
    "ConfigurableClass": ("dagster._serdes", "ConfigurableClass"),
    "ConfigurableClassData": ("dagster._serdes", "ConfigurableClassData"),
    # setting up an empty Dagster home (execution/instance_home.py)
    "SqliteEventLogStorage": ("dagster._core.storage.event_log.sqlite.sqlite_event_log", "SqliteEventLogStorage"),
    "SqliteRunStorage": ("dagster._core.storage.runs.sqlite.sqlite_run_storage", "SqliteRunStorage"),
    "SqliteScheduleStorage": (
        "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
        "SqliteScheduleStorage",
    ),
    "sqlite_run_storage_module": ("dagster._core.storage.runs.sqlite.sqlite_run_storage", None),
    "get_alembic_config": ("dagster._core.storage.sql", "get_alembic_config"),
    # a run's instance, reopened after the run's process ended (sections/run_end.py)
    "InstanceRef": ("dagster._core.instance.ref", "InstanceRef"),
    # section jobs' untyped inputs (sections/job.py)
    "resolve_dagster_type": ("dagster._core.types.dagster_type", "resolve_dagster_type"),
    # cron: Dagster's own validity rules and tick iterator (catalog/loading.py, compile/sla.py)
    "is_valid_cron_string": ("dagster._utils.schedules", "is_valid_cron_string"),
    "cron_string_iterator": ("dagster._utils.schedules", "cron_string_iterator"),
}

# the module a forkserver preloads so step processes start with Dagster's multiprocess machinery imported
MULTIPROCESS_MODULE = "dagster._core.executor.multiprocess"


def resolve(name: str) -> Any:
    module, attribute = NAMES[name]
    loaded = importlib.import_module(module)
    return loaded if attribute is None else getattr(loaded, attribute)


def __getattr__(name: str) -> Any:
    if name not in NAMES:
        raise AttributeError(f"module 'exo_dagster.dagster_private' has no attribute {name!r}")
    value = resolve(name)
    globals()[name] = value
    return value
