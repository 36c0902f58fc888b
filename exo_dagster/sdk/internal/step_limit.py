"""A step attempt's time limit, from its satellite call to its output written, and stopping its DuckDB work.

A `sql` step returns a lazy DuckDB relation: its query runs when the output is written, after the satellite
has returned, so a limit on the satellite call alone never stops it. A limit starts with the satellite call
(runtime/step_timeout.py) and stays open until the step's output is written (`covering`, around every
`write_parquet_atomic`). Every DuckDB connection the step opens through `sdk.duck` belongs to it. When time is
up, or the run is stopped (its SLA, a cancel: `interrupt_all`), each one is interrupted with
`DuckDBPyConnection.interrupt()`, which DuckDB honours with any number of threads, while a signal reaches Python
only between DuckDB's tasks, if at all. An interrupt that lands between two queries is lost, so it is repeated
until the step lets go.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import signal
import threading
from collections.abc import Iterator
from typing import Any

from exo_dagster.errors import TransientError

REPEAT_S = 0.25  # how often an expired limit interrupts its connections again ...
REPEAT_FOR_S = 60.0  # ... and for how long at most (a step that never lets go does not keep a thread forever)


class StepTimeout(TransientError, TimeoutError):
    """The step ran longer than its `timeout:` (a transient error: its retry policy applies)."""


class RunStopped(KeyboardInterrupt):
    """The run was stopped while the step ran (its SLA, a cancel); Dagster reports the step as interrupted."""


class Limit:
    """One step attempt: the DuckDB connections it opened and, with a `timeout:`, its deadline."""

    def __init__(self, seconds: float | None = None, text: str = ""):
        self.connections: list[Any] = []
        self.reason: BaseException | None = None  # why time is up, once it is
        self.in_call = True  # the satellite is running; False once it returned (its output is written next)
        self.output: Any = None  # what it returned: the object whose writing is still within the limit
        self._closed = threading.Event()
        self._repeating = False
        self._lock = threading.Lock()
        if seconds:
            start_quiet_thread(self._expire_after, seconds, StepTimeout(text), name="exo-step-limit")

    def _expire_after(self, seconds: float, reason: BaseException) -> None:
        if not self._closed.wait(seconds):
            self.expire(reason)

    def add(self, con: Any) -> None:
        with self._lock:
            self.connections.append(con)
            late = self.reason is not None
        if late:  # opened after time was up (the interrupt loop may have ended): stopped at once
            _interrupt(con)

    def expire(self, reason: BaseException) -> None:
        """Time is up (or the run stopped): interrupt every connection now and again until the step lets go."""
        with self._lock:
            if self._closed.is_set():
                return
            if self.reason is None:
                self.reason = reason
            start, self._repeating = not self._repeating, True
        self._interrupt_all()
        if start:
            start_quiet_thread(self._repeat, name="exo-step-interrupt")

    def _repeat(self) -> None:
        for _ in range(int(REPEAT_FOR_S / REPEAT_S)):
            if self._closed.wait(REPEAT_S):
                return
            self._interrupt_all()

    def _interrupt_all(self) -> None:
        with self._lock:
            connections = list(self.connections)
        for con in connections:
            _interrupt(con)

    def error(self) -> BaseException:
        """A fresh exception saying why time is up (the step raises it instead of DuckDB's "Interrupted!")."""
        assert self.reason is not None
        return type(self.reason)(*self.reason.args)

    def close(self) -> None:
        """The attempt is over: no more interrupts, and the connections are let go."""
        self._closed.set()
        with self._lock:
            self.connections = []
        with _registry_lock:
            for key, limit in list(_limits.items()):
                if limit is self:
                    del _limits[key]


def start_quiet_thread(target: Any, *args: Any, name: str) -> None:
    """A daemon thread that never takes a signal: the kernel delivers SIGALRM (step_timeout's alarm) or SIGINT
    to any thread that does not block it, and a signal taken by this one would not wake the step's main thread
    from a sleep or a socket read."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # a new thread starts with its parent's mask
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_SIGNALS = {getattr(signal, name) for name in ("SIGALRM", "SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)}


def _interrupt(con: Any) -> None:
    try:
        con.interrupt()
    except Exception:
        pass


_limits: dict[int, Limit] = {}  # thread that runs the step -> its current attempt
_registry_lock = threading.Lock()
_owner: contextvars.ContextVar[Limit | None] = contextvars.ContextVar("exo_step_limit", default=None)


def start(seconds: float | None = None, text: str = "") -> Limit:
    """The limit of a step attempt that starts in this thread (an earlier attempt here is over)."""
    limit = Limit(seconds, text)
    with _registry_lock:
        previous = _limits.get(threading.get_ident())
        _limits[threading.get_ident()] = limit
    if previous is not None:
        previous.close()
    return limit


def current() -> Limit | None:
    """The open limit of the step running in this thread, if any."""
    return _limits.get(threading.get_ident())


def register(con: Any) -> Any:
    """`con` belongs to the step whose code opens it (sdk.duck calls this for every connection it opens)."""
    limit = _owner.get()
    if limit is not None:
        limit.add(con)
    return con


@contextlib.contextmanager
def enforced(limit: Limit) -> Iterator[None]:
    """Run the step's code under `limit`: connections opened here are its; once time is up, whatever the code
    raises (DuckDB's "Interrupted!", a KeyboardInterrupt) becomes the limit's own error."""
    token = _owner.set(limit)
    try:
        yield
    except BaseException as exc:
        if limit.reason is not None and not isinstance(exc, type(limit.reason)):
            raise limit.error() from None
        raise
    finally:
        _owner.reset(token)


def returned(limit: Limit, value: Any) -> Any:
    """The satellite returned `value`: writing it (`covering`) is the rest of the attempt."""
    limit.in_call, limit.output = False, value
    return value


@contextlib.contextmanager
def covering(obj: Any) -> Iterator[None]:
    """Writing `obj` (where a lazy result computes): if it is what the step running in this thread returned, still
    within that step's limit, which ends here. Any other write (a satellite's own file, a write after the step)
    is not the step's output, and an earlier step's expired limit never fails it."""
    limit = current()
    if limit is None or limit.in_call or limit.output is not obj:
        yield
        return
    try:
        if limit.reason is not None:
            raise limit.error()
        with enforced(limit):
            yield
    finally:
        limit.close()


@atexit.register
def _close_all() -> None:
    """No interrupt from a daemon thread while the interpreter shuts down (it would end inside DuckDB's C++)."""
    with _registry_lock:
        limits = list(_limits.values())
    for limit in limits:
        limit.close()


def interrupt_all(error: BaseException | str) -> int:
    """Stop the DuckDB work of every step running in this process (the run was stopped): each raises `error`
    (a text: RunStopped; Dagster's executors pass the interrupt they expect); how many steps were open."""
    with _registry_lock:
        limits = list(_limits.values())
    for limit in limits:
        limit.expire(RunStopped(error) if isinstance(error, str) else error)
    return len(limits)
