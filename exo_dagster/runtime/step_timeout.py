"""A step's `timeout:`: one attempt that runs longer fails with a clear message and is retried by its policy.

Dagster has no per-step timeout. The satellite call is bounded with SIGALRM where the step computes in
its process's main thread (exo's local executor, in-process runs, `dagster job execute`): the alarm
raises `StepTimeout` inside the satellite, even in a sleep or a socket read, and the step's retry
policy applies (a timeout is a transient error, step_errors.py). Elsewhere (a step computing in a
worker thread) the call runs in a helper thread and the step stops waiting for it at the deadline.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator


class StepTimeout(TimeoutError):
    """The step's satellite ran longer than its `timeout:`."""


def _text(step: Any, seconds: float) -> str:
    return f"step `{step.identifier}` ({step.spec.name}) timed out after {seconds:g}s (its `timeout:` is {step.spec.timeout})"


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
    """`fn()`, failing with StepTimeout after `seconds` (no limit when None)."""
    if not seconds:
        return fn()
    text = _text(step, seconds)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _alarm(seconds, text):
            return fn()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the step's thread below
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"exo-step-{step.identifier}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise StepTimeout(text)
    if "error" in box:
        raise box["error"]
    return box["value"]
