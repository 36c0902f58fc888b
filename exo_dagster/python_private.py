"""The one private Python name exo uses, in one place: `threading._register_atexit`.

The `failure:`/`logs:` sections of a run run when the process that orchestrated it ends (sections/run_end.py),
in that process's main thread, and they execute Dagster jobs in-process. Python's public `atexit` cannot host
that: its callbacks run only after `threading` has joined every non-daemon thread and after
`concurrent.futures` has shut its thread pools down, so a section job that submits work to a thread pool
fails with "cannot schedule new futures after interpreter shutdown" (and Python 3.12+ refuses to start
threads at all by then). `threading._register_atexit` runs its callbacks in the main thread *before* that
shutdown, last registered first, which is exactly what `concurrent.futures` itself relies on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def call_before_thread_shutdown(callback: Callable[[], None]) -> None:
    """Have `callback` run in the main thread when the interpreter starts to exit, before threads are joined.
    RuntimeError once the interpreter is already shutting down."""
    threading._register_atexit(callback)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
