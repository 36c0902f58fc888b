"""A step's `timeout:`: one attempt that runs longer fails with a clear message and is retried by its policy.

Dagster has no per-step timeout. The limit covers the whole attempt: the satellite call, and the writing of
its output, where a lazy result (a `sql` step's DuckDB relation) actually computes (sdk/internal/step_limit.py). At the
deadline every DuckDB connection the step opened is interrupted, which stops a query whatever its threads. The
satellite call is also bounded with SIGALRM where the step computes in its process's main thread (exo's local
executor, in-process runs, `dagster job execute`): the alarm raises `StepTimeout` inside the satellite, even in a
sleep or a socket read, and the step's retry policy applies (a timeout is a transient error, step_errors.py).
Elsewhere (a step computing in a worker thread) the call runs in a helper thread and the step stops waiting for
it at the deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from exo_dagster.sdk.internal import step_limit
from exo_dagster.sdk.internal.step_limit import StepTimeout


def _text(step: Any, seconds: float) -> str:
    return (
        f"step `{step.identifier}` ({step.spec.name}) timed out after {seconds:g}s "
        f"(its `timeout:` is {step.spec.timeout})"
    )


@contextlib.contextmanager
def _alarm(seconds: float, text: str) -> Iterator[None]:
    def _fire(_signo, _frame):
        raise StepTimeout(text)

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call(fn: Callable[[], Any], seconds: float | None, step: Any) -> Any:
    """`fn()`, failing with StepTimeout after `seconds` (no limit when None). The step's limit stays open
    after `fn` returns: writing its output is within it too (step_limit.covering)."""
    text = _text(step, seconds) if seconds else ""
    limit = step_limit.start(seconds, text)  # without a timeout too: a stopped run interrupts the step's DuckDB
    try:
        with step_limit.enforced(limit):
            value = _bounded(fn, seconds, text, step)
    except BaseException:
        limit.close()
        raise
    return step_limit.returned(limit, value)


def _bounded(fn: Callable[[], Any], seconds: float | None, text: str, step: Any) -> Any:
    if not seconds:
        return fn()
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _alarm(seconds, text):
            return fn()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the step's thread below
            box["error"] = exc

    # in the step's context: the connections the helper thread opens are the step's (step_limit.register)
    worker = threading.Thread(
        target=contextvars.copy_context().run, args=(run,), name=f"exo-step-{step.identifier}", daemon=True
    )
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StepTimeout(text)
    if "error" in box:
        raise box["error"]
    return box["value"]
