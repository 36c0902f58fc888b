"""Holding a run to its SLA from inside the run: the `dagster/max_runtime` tag value and the guard timer."""

from __future__ import annotations

import os
import signal
import threading
import time

from exo_dagster.dagster_private import DagsterExecutionInterruptedError
from exo_dagster.sdk.internal import step_limit


def max_runtime_tag(seconds: float) -> str:
    """`dagster/max_runtime` as Dagster reads it (a number of seconds), never in exponent notation."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


class SlaGuard:
    """Stops the run from inside once it is past its SLA, so the SLA holds with or without a daemon.

    Dagster's run monitoring (on in every `deploy/` file) enforces `dagster/max_runtime` only where a
    daemon runs; `dagster job execute` and `exo run` have none. The guard is a timer in the process that
    orchestrates the run: when it fires, it interrupts the run as Ctrl-C would (Dagster's executors
    stop their steps on SIGINT) and the executor wrapper turns that into "SLA exceeded". A signal does not
    stop a DuckDB query (Python sees it only between DuckDB's tasks), so the DuckDB work of steps running in
    this process is interrupted too (step_limit.interrupt_all); step processes do that when told to stop
    (execution/step_process.py).
    """

    def __init__(self, seconds: float | None, started: float | None = None):
        self.seconds, self.started = seconds, started if started is not None else time.time()
        self.expired = self.signalled = False
        self._lock = threading.Lock()
        self._done = False
        self._timer = None

    def message(self) -> str:
        return f"SLA exceeded: the run took longer than its sla of {self.seconds:g}s and was stopped"

    def __enter__(self) -> SlaGuard:
        # SIGINT reaches the main thread only: elsewhere the executor wrapper stops the run at its next event
        self._signal = threading.current_thread() is threading.main_thread()
        if self.seconds is not None:
            self._timer = threading.Timer(max(0.0, self.started + self.seconds - time.time()), self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
        step_limit.interrupt_all(DagsterExecutionInterruptedError(self.message()))  # as the SIGINT below would
        if self._signal:
            self.signalled = True
            os.kill(os.getpid(), signal.SIGINT)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
