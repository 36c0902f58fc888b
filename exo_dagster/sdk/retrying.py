"""Calling something again when it fails for a passing reason: a service that is busy, a file another
process holds. One policy, a sync and an async caller.

    policy = Retry(attempts=4, delay=0.05, jitter=(0.5, 1.5))
    response = retrying.call(lambda: http.get(url), policy, retry_on=httpx.TransportError)

The wait after failed attempt `n` (0 for the first) is `min(max_delay, delay * factor**n)` times a
random factor in `jitter`; when the failure says how long to wait (`retry_after`, e.g. an HTTP
`Retry-After`), that wait (at most `max_retry_after`, times `retry_after_jitter`) replaces it. The
calls stop after `attempts` tries, or once a failure comes after `deadline` (a `time.monotonic()`
value), whichever is first. An error that `retry_on` does not accept is raised at once; the last
retryable error is raised when the tries run out, and a result that `retry_result` accepts is
returned as it is then.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
ErrorTest = Any  # an exception type, a tuple of them, or a predicate on the exception


@dataclass(frozen=True)
class Retry:
    """How often and how long to wait. `attempts=None` tries until the `deadline` given to the call."""

    attempts: int | None = 3
    delay: float = 0.5
    factor: float = 2.0
    max_delay: float = math.inf
    jitter: tuple[float, float] = (0.5, 1.0)
    max_retry_after: float = 300.0
    retry_after_jitter: tuple[float, float] = (1.0, 1.1)

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (0-based)."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after) * random.uniform(*self.retry_after_jitter)
        try:
            grown = self.delay * self.factor**attempt
        except OverflowError:
            grown = math.inf
        return min(self.max_delay, grown) * random.uniform(*self.jitter)


def _error_test(retry_on: ErrorTest) -> Callable[[BaseException], bool]:
    if isinstance(retry_on, type) or isinstance(retry_on, tuple):
        return lambda exc: isinstance(exc, retry_on)
    return retry_on


class _Attempts:
    """The bookkeeping shared by `call` and `acall`: after a failure, how long to wait, or None to stop."""

    def __init__(
        self,
        policy: Retry,
        retry_on: ErrorTest,
        retry_result: Callable[[Any], bool] | None,
        retry_after: Callable[[Any], float | None] | None,
        deadline: float | None,
        on_retry: Callable[[int, Any, float], None] | None,
    ):
        if policy.attempts is None and deadline is None:
            raise ValueError("a retry needs `attempts` or a `deadline`")
        if policy.attempts is not None and policy.attempts < 1:
            raise ValueError("a retry needs at least one attempt")
        self.policy, self.retryable = policy, _error_test(retry_on)
        self.retry_result, self.retry_after, self.deadline, self.on_retry = (
            retry_result,
            retry_after,
            deadline,
            on_retry,
        )
        self.number = 0

    def after_error(self, exc: BaseException) -> float | None:
        return self._next(exc) if self.retryable(exc) else None

    def after_result(self, result: Any) -> float | None:
        return self._next(result) if self.retry_result is not None and self.retry_result(result) else None

    def _next(self, outcome: Any) -> float | None:
        attempt, self.number = self.number, self.number + 1
        if self.policy.attempts is not None and self.number >= self.policy.attempts:
            return None
        if self.deadline is not None and time.monotonic() > self.deadline:
            return None
        wait = self.policy.wait(attempt, self.retry_after(outcome) if self.retry_after else None)
        if self.on_retry is not None:
            self.on_retry(attempt, outcome, wait)
        return wait


def call(
    fn: Callable[[], T],
    policy: Retry,
    *,
    retry_on: ErrorTest = Exception,
    retry_result: Callable[[T], bool] | None = None,
    retry_after: Callable[[Any], float | None] | None = None,
    deadline: float | None = None,
    on_retry: Callable[[int, Any, float], None] | None = None,
) -> T:
    """`fn()`, again after a wait while it raises an error `retry_on` accepts (an exception type, a tuple of
    them, or a predicate) or returns a result `retry_result` accepts. `retry_after(error or result)` may
    name the wait the other side asked for; `on_retry(attempt, error or result, wait)` runs before each wait."""
    tries = _Attempts(policy, retry_on, retry_result, retry_after, deadline, on_retry)
    while True:
        try:
            result = fn()
        except Exception as exc:
            wait = tries.after_error(exc)
            if wait is None:
                raise
        else:
            wait = tries.after_result(result)
            if wait is None:
                return result
        time.sleep(wait)


async def acall(
    fn: Callable[[], Awaitable[T]],
    policy: Retry,
    *,
    retry_on: ErrorTest = Exception,
    retry_result: Callable[[T], bool] | None = None,
    retry_after: Callable[[Any], float | None] | None = None,
    deadline: float | None = None,
    on_retry: Callable[[int, Any, float], None] | None = None,
) -> T:
    """`call` for a coroutine function: awaits `fn()` and waits with `asyncio.sleep`."""
    tries = _Attempts(policy, retry_on, retry_result, retry_after, deadline, on_retry)
    while True:
        try:
            result = await fn()
        except Exception as exc:
            wait = tries.after_error(exc)
            if wait is None:
                raise
        else:
            wait = tries.after_result(result)
            if wait is None:
                return result
        await asyncio.sleep(wait)
