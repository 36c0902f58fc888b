"""exo_dagster.sdk.retrying: attempts, backoff growth and cap, Retry-After, deadlines, sync and async.

Real sleeps, kept to tens of milliseconds; waits are measured between attempts."""

from __future__ import annotations

import asyncio
import time

import pytest

from exo_dagster.sdk import retrying
from exo_dagster.sdk.retrying import Retry

NO_JITTER = (1.0, 1.0)


class Busy(Exception):
    def __init__(self, retry_after: float | None = None):
        super().__init__("busy")
        self.retry_after = retry_after


class Flaky:
    """Fails `failures` times with `error()`, then returns "done"; records when each attempt began."""

    def __init__(self, failures: int, error=Busy):
        self.failures, self.error, self.stamps = failures, error, []

    def __call__(self):
        self.stamps.append(time.monotonic())
        if len(self.stamps) <= self.failures:
            raise self.error()
        return "done"

    async def async_call(self):
        return self()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def test_succeeds_after_retryable_failures_with_growing_waits():
    fn = Flaky(3)
    policy = Retry(attempts=5, delay=0.02, factor=2.0, jitter=NO_JITTER)
    assert retrying.call(fn, policy, retry_on=Busy) == "done"
    assert len(fn.stamps) == 4
    gaps = fn.gaps()
    for gap, wanted in zip(gaps, (0.02, 0.04, 0.08)):
        assert wanted <= gap < wanted + 0.05, gaps
    assert gaps[0] < gaps[1] < gaps[2]


def test_gives_up_after_attempts_raising_the_last_error():
    fn = Flaky(10)
    with pytest.raises(Busy):
        retrying.call(fn, Retry(attempts=3, delay=0.001), retry_on=Busy)
    assert len(fn.stamps) == 3


def test_a_non_retryable_error_is_raised_at_once():
    fn = Flaky(5, error=KeyError)
    started = time.monotonic()
    with pytest.raises(KeyError):
        retrying.call(fn, Retry(attempts=5, delay=1.0), retry_on=Busy)
    assert len(fn.stamps) == 1 and time.monotonic() - started < 0.5


def test_a_predicate_chooses_which_errors_retry():
    fn = Flaky(2, error=lambda: OSError("database is locked"))
    assert retrying.call(fn, Retry(attempts=3, delay=0.001), retry_on=lambda e: "lock" in str(e)) == "done"
    other = Flaky(2, error=lambda: OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        retrying.call(other, Retry(attempts=3, delay=0.001), retry_on=lambda e: "lock" in str(e))
    assert len(other.stamps) == 1


def test_the_wait_is_capped():
    fn = Flaky(4)
    policy = Retry(attempts=5, delay=0.01, factor=10.0, max_delay=0.03, jitter=NO_JITTER)
    retrying.call(fn, policy, retry_on=Busy)
    gaps = fn.gaps()
    assert 0.01 <= gaps[0] < 0.03, gaps
    for gap in gaps[1:]:  # 0.1, 1, 10 uncapped
        assert 0.03 <= gap < 0.08, gaps


def test_wait_values_jitter_cap_and_huge_attempt_numbers():
    policy = Retry(delay=1.0, factor=2.0, max_delay=5.0, jitter=(0.5, 1.0))
    for attempt, base in ((0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0), (5000, 5.0)):
        for _ in range(50):
            assert 0.5 * base <= policy.wait(attempt) <= base
    assert Retry(jitter=(1.0, 1.0)).wait(2) == 2.0  # no cap by default


def test_retry_after_is_honoured_and_capped():
    fn = Flaky(1, error=lambda: Busy(retry_after=0.15))
    policy = Retry(attempts=3, delay=0.001, jitter=NO_JITTER, retry_after_jitter=NO_JITTER)
    retrying.call(fn, policy, retry_on=Busy, retry_after=lambda e: e.retry_after)
    assert 0.15 <= fn.gaps()[0] < 0.25
    capped = Flaky(1, error=lambda: Busy(retry_after=60))
    retrying.call(
        capped,
        Retry(attempts=2, max_retry_after=0.05, retry_after_jitter=NO_JITTER),
        retry_on=Busy,
        retry_after=lambda e: e.retry_after,
    )
    assert 0.05 <= capped.gaps()[0] < 0.15
    waits = [Retry().wait(0, retry_after=1.0) for _ in range(200)]  # the default spread over many draws
    assert min(waits) >= 1.0  # never sooner than the server asked
    assert max(waits) <= 1.1 and len(set(waits)) > 1  # a little later, spread so clients do not retry in step


def test_no_retry_after_falls_back_to_backoff():
    fn = Flaky(1, error=lambda: Busy(retry_after=None))
    retrying.call(
        fn, Retry(attempts=2, delay=0.03, jitter=NO_JITTER), retry_on=Busy, retry_after=lambda e: e.retry_after
    )
    assert 0.03 <= fn.gaps()[0] < 0.1


def test_deadline_without_an_attempt_limit():
    fn = Flaky(1000)
    started = time.monotonic()
    with pytest.raises(Busy):
        retrying.call(
            fn,
            Retry(attempts=None, delay=0.01, max_delay=0.02, jitter=NO_JITTER),
            retry_on=Busy,
            deadline=started + 0.15,
        )
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 0.4
    assert 5 <= len(fn.stamps) <= 16


def test_needs_attempts_or_a_deadline():
    with pytest.raises(ValueError):
        retrying.call(lambda: 1, Retry(attempts=None))
    with pytest.raises(ValueError):
        retrying.call(lambda: 1, Retry(attempts=0))


def test_retrying_on_results():
    answers = iter([503, 503, 200])
    seen = []
    result = retrying.call(
        lambda: next(answers),
        Retry(attempts=5, delay=0.001),
        retry_result=lambda s: s == 503,
        on_retry=lambda attempt, outcome, wait: seen.append((attempt, outcome)),
    )
    assert result == 200 and seen == [(0, 503), (1, 503)]
    always = iter([503] * 10)
    assert retrying.call(lambda: next(always), Retry(attempts=3, delay=0.001), retry_result=lambda s: s == 503) == 503


def test_on_retry_sees_each_wait():
    waits = []
    fn = Flaky(2)
    retrying.call(
        fn,
        Retry(attempts=3, delay=0.01, jitter=NO_JITTER),
        retry_on=Busy,
        on_retry=lambda attempt, exc, wait: waits.append((attempt, type(exc).__name__, wait)),
    )
    assert waits == [(0, "Busy", 0.01), (1, "Busy", 0.02)]


def test_async_variant():
    fn = Flaky(2)
    policy = Retry(attempts=4, delay=0.02, jitter=NO_JITTER)
    assert asyncio.run(retrying.acall(fn.async_call, policy, retry_on=Busy)) == "done"
    assert len(fn.stamps) == 3
    assert 0.02 <= fn.gaps()[0] < 0.07 and 0.04 <= fn.gaps()[1] < 0.09

    failing = Flaky(10)
    with pytest.raises(Busy):
        asyncio.run(retrying.acall(failing.async_call, Retry(attempts=2, delay=0.001), retry_on=Busy))
    assert len(failing.stamps) == 2
    fatal = Flaky(10, error=KeyError)
    with pytest.raises(KeyError):
        asyncio.run(retrying.acall(fatal.async_call, Retry(attempts=5, delay=1.0), retry_on=Busy))
    assert len(fatal.stamps) == 1


def test_async_waits_do_not_block_the_loop():
    """Two retrying coroutines on one loop wait at the same time, not one after the other."""

    async def both():
        a, b = Flaky(2), Flaky(2)
        policy = Retry(attempts=3, delay=0.05, jitter=NO_JITTER)  # 0.05 + 0.1 of waiting each
        started = time.monotonic()
        await asyncio.gather(
            retrying.acall(a.async_call, policy, retry_on=Busy), retrying.acall(b.async_call, policy, retry_on=Busy)
        )
        return time.monotonic() - started

    assert asyncio.run(both()) < 0.27
