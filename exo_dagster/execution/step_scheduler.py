"""Which steps start next: Dagster's ActiveExecution, choosing CPU steps by free CPU slots and GPU steps by devices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exo_dagster.dagster_private import (
    PRIORITY_TAG,
    ActiveExecution,
    ExecutionStep,
    TagConcurrencyLimitsCounter,
    check,
    pool_key_for_step,
)
from exo_dagster.execution.device_leases import DevicePool


class DeviceScheduler(ActiveExecution):
    """Dagster's ActiveExecution, choosing CPU steps by free CPU slots and GPU steps by devices."""

    def __init__(self, *args: Any, leases: DevicePool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.leases = leases

    def get_steps_to_execute(self, limit: int | None = None) -> Sequence[ExecutionStep]:
        check.invariant(self._context_guard, "ActiveExecution must be used as a context manager")
        self._update()
        steps = sorted((self.get_step_by_key(k) for k in self._executable), key=self._sort_key_fn)
        counter = (
            TagConcurrencyLimitsCounter(
                self._tag_concurrency_limits, [self.get_step_by_key(k) for k in self._in_flight]
            )
            if self._tag_concurrency_limits
            else None
        )
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
            pool = pool_key_for_step(step)
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
