"""GPU device leases: the orchestrator's device pool, and the step process's end of its lease.

A GPU step (`exo/gpu: N`) holds a lease on N devices for as long as its compute runs: the step
process asks the orchestrator over a pipe (`gpu_lease`), waits until N devices are free, runs with
exactly those in `CUDA_VISIBLE_DEVICES`, and hands them back when the compute returns (or when the
process dies: `DevicePool.finished`). A device is leased to one step at a time.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from exo_dagster.dagster_private import (
    DagsterExecutionInterruptedError,
    DagsterUnmetExecutorRequirementsError,
    ExecutionStep,
)
from exo_dagster.errors import UserError
from exo_dagster.execution import gpus
from exo_dagster.keys import GPU_TAG

LOOKAHEAD = 2  # default: GPU step processes started ahead of a free device, per device


class NotEnoughGpus(UserError, DagsterUnmetExecutorRequirementsError):
    """A step asks for more GPUs than the executor can ever give it."""


def gpus_needed(step: ExecutionStep) -> int:
    raw = step.tags.get(GPU_TAG, "0")
    try:
        return max(int(raw), 0)
    except ValueError:
        raise NotEnoughGpus(
            f"step `{step.key}` has op tag {GPU_TAG}={raw!r}; it must be a whole number of GPUs"
        ) from None


# --------------------------------------------------------------------------- inside a step process

_CHILD_LEASE: ChildLease | None = None


class ChildLease:
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


def set_child_lease(conn: Any, need: int, term_event: Any) -> None:
    """Called in the step process before the step runs: its lease channel (None for a CPU step)."""
    global _CHILD_LEASE
    _CHILD_LEASE = ChildLease(conn, need, term_event) if conn is not None else None


# --------------------------------------------------------------------------- in the orchestrator


class DevicePool:
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
