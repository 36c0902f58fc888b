"""Step retries: `retries` (cluster default, step override) and `retry:` settings -> a Dagster RetryPolicy.

Dagster's RetryPolicy knows delay, exponential/linear backoff and jitter; `fixed` backoff is its
`backoff=None`, and `max-delay` (which it lacks) is a subclass that caps `calculate_delay`, the one
method Dagster's step executor asks for the wait.
"""

from __future__ import annotations

import dagster as dg

from exo_dagster.spec.models import ClusterBody, RetrySettings, Step, duration_seconds

BACKOFF = {"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR, "fixed": None}
JITTER = {
    True: dg.Jitter.PLUS_MINUS,
    False: None,
    "plus-minus": dg.Jitter.PLUS_MINUS,
    "full": dg.Jitter.FULL,
    "none": None,
}


class CappedRetryPolicy(dg.RetryPolicy):
    """A RetryPolicy whose computed wait never exceeds `max_delay` seconds (and is never negative)."""

    max_delay: float | None

    def __new__(cls, *args, max_delay: float | None = None, **kwargs):
        policy = super().__new__(cls, *args, **kwargs)
        policy.max_delay = max_delay
        return policy

    def calculate_delay(self, attempt_num: int) -> float:
        wait = max(0.0, float(super().calculate_delay(attempt_num)))
        return min(wait, self.max_delay) if self.max_delay is not None else wait

    def __repr__(self) -> str:
        return (
            f"CappedRetryPolicy(max_retries={self.max_retries}, delay={self.delay}, backoff={self.backoff}, "
            f"jitter={self.jitter}, max_delay={self.max_delay})"
        )


def settings_for(cluster: ClusterBody, step: Step) -> RetrySettings:
    """The step's `retry:` keys over the cluster's `retry:` keys over the defaults."""
    merged: dict = {}
    for source in (cluster.retry, step.retry):
        if source is not None:
            merged.update({name: getattr(source, name) for name in source.model_fields_set})
    return RetrySettings.model_validate(merged)


def retry_policy(cluster: ClusterBody, step: Step) -> dg.RetryPolicy | None:
    """None when the step gets no retries; otherwise a policy from the merged settings."""
    retries = step.retries if step.retries is not None else cluster.retries
    if not retries:
        return None
    settings = settings_for(cluster, step)
    delay = duration_seconds(settings.delay)
    max_delay = duration_seconds(settings.max_delay) if settings.max_delay is not None else None
    backoff = BACKOFF[settings.backoff]
    jitter = JITTER[settings.jitter]
    if delay == 0:
        backoff = jitter = None  # Dagster refuses backoff/jitter without a delay; there is nothing to grow
    return CappedRetryPolicy(max_retries=retries, delay=delay, backoff=backoff, jitter=jitter, max_delay=max_delay)
