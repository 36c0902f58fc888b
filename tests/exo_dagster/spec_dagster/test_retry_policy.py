"""`retries` and `retry: {delay, backoff, jitter, max-delay}` -> RetryPolicy, and a real run that retries."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from exo_dagster import Registry, SatelliteConfig, SpecError, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.spec.models import ClusterBody
from exo_dagster.spec_dagster.retry_policy import CappedRetryPolicy, retry_policy, settings_for


def _body(cluster_retry: dict | None, step: dict, retries: int = 3) -> tuple[ClusterBody, object]:
    body = ClusterBody.model_validate(
        {
            "identifier": "t/retry",
            "retries": retries,
            **({"retry": cluster_retry} if cluster_retry else {}),
            "satellites": [{"name": "A", "uses": "satellite/exospherehost/sql", **step}],
        }
    )
    return body, body.satellites[0]


def test_step_keys_override_cluster_keys_one_by_one():
    body, step = _body({"delay": "2s", "backoff": "linear", "max-delay": "10s"}, {"retry": {"backoff": "fixed"}})
    merged = settings_for(body, step)
    assert (merged.delay, merged.backoff, merged.max_delay, merged.jitter) == ("2s", "fixed", "10s", True)


@pytest.mark.parametrize(
    "backoff, expected", [("exponential", [1, 3, 7, 15]), ("linear", [1, 2, 3, 4]), ("fixed", [1, 1, 1, 1])]
)
def test_backoff_shapes_without_jitter(backoff, expected):
    body, step = _body({"delay": 1, "backoff": backoff, "jitter": False}, {})
    policy = retry_policy(body, step)
    assert policy.max_retries == 3
    assert [policy.calculate_delay(n) for n in (1, 2, 3, 4)] == expected


def test_max_delay_caps_the_wait_and_jitter_stays_within_bounds():
    body, step = _body({"delay": "1s", "backoff": "exponential", "jitter": False, "max-delay": "5s"}, {"retries": 6})
    policy = retry_policy(body, step)
    assert isinstance(policy, CappedRetryPolicy) and policy.max_retries == 6
    assert [policy.calculate_delay(n) for n in range(1, 6)] == [1, 3, 5, 5, 5]
    body, step = _body({"delay": "500ms", "jitter": "full", "max-delay": "2s"}, {})
    policy = retry_policy(body, step)
    assert policy.jitter == dg.Jitter.FULL
    waits = [policy.calculate_delay(4) for _ in range(200)]  # 7.5s before jitter, capped at 2s
    assert all(0 <= w <= 2 for w in waits) and len(set(waits)) > 1


def test_defaults_and_no_retries():
    body, step = _body(None, {})
    policy = retry_policy(body, step)
    assert (policy.delay, policy.backoff, policy.jitter, policy.max_delay) == (
        1.0,
        dg.Backoff.EXPONENTIAL,
        dg.Jitter.PLUS_MINUS,
        None,
    )
    body, step = _body(None, {"retries": 0})
    assert retry_policy(body, step) is None
    body, step = _body({"delay": 0}, {})
    assert retry_policy(body, step).calculate_delay(3) == 0


def test_bad_retry_settings_are_located_errors(write_cluster):
    path = write_cluster(
        "version: 0.0.1b\n"
        "cluster:\n"
        "  identifier: t/bad-retry\n"
        "  retry: {delay: 5 years}\n"
        "  satellites:\n"
        "    - name: A\n"
        "      uses: satellite/exospherehost/sql\n"
        "      retry:\n"
        "        backoff: quadratic\n"
        "      config: {query: select 1}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_cluster(path.read_text(), str(path))
    text = str(caught.value)
    assert f"{path}:4:" in text and "is not a duration" in text
    assert f"{path}:9:18" in text and "'exponential', 'linear' or 'fixed'" in text


ATTEMPTS: list[float] = []


class FlakyConfig(SatelliteConfig):
    marker: str
    fail_times: int = 2


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/flaky", config=FlakyConfig, registry=extra)
    def flaky(ctx: StepContext, config: FlakyConfig):
        count = Path(config.marker)
        seen = int(count.read_text()) if count.exists() else 0
        count.write_text(str(seen + 1))
        ATTEMPTS.append(time.monotonic())
        if seen < config.fail_times:
            raise ConnectionError(f"attempt {seen + 1} failed")
        return [{"attempts": seen + 1}]

    return builtin_registry().merged(extra)


@pytest.mark.slow
def test_a_flaky_step_is_retried_with_the_configured_waits(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    text = f"""\
version: 0.0.1b
cluster:
  identifier: t/flaky
  retries: 1
  retry: {{delay: 0.3s, backoff: linear, jitter: false, max-delay: 0.5s}}
  satellites:
    - name: Flaky
      uses: satellite/test/flaky
      retries: 3
      config: {{marker: "{tmp_path / "count"}", fail-times: 3}}
"""
    cluster = parse_cluster(text, str(tmp_path / "flaky.yaml"), registry=_registry())
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    ATTEMPTS.clear()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retried) == 3 and len(ATTEMPTS) == 4
    gaps = [b - a for a, b in zip(ATTEMPTS, ATTEMPTS[1:])]
    # linear 0.3s x attempt, capped at 0.5s: 0.3, 0.5, 0.5
    assert gaps[0] >= 0.3 and gaps[1] >= 0.5 and gaps[2] >= 0.5, gaps
    assert max(gaps) < 3, gaps
    # one retry fewer than needed: the step fails after its last attempt
    (tmp_path / "count").unlink()
    cluster = parse_cluster(
        text.replace("retries: 3", "retries: 2"), str(tmp_path / "flaky.yaml"), registry=_registry()
    )
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert not result.success and (tmp_path / "count").read_text() == "3"
