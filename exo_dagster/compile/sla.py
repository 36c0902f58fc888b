"""`sla: <duration>` (6h, 90m, 5s...) -> the run's max runtime tag (set by the compiler) and a freshness policy
on the cluster's assets.

A run that takes longer than the SLA is failed by Dagster's run monitoring (`dagster/max_runtime`).
Freshness says when the data itself is late, which the UI shows on every asset (Dagster's freshness
daemon evaluates it; a breach turns the asset's freshness to FAIL):

- scheduled clusters (`trigger.cron`): a fresh result is due every tick and takes at most the SLA,
  so the data may be at most (longest gap between ticks + SLA) old;
- other clusters (files, after, manual): the data may be at most the SLA old.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import dagster as dg

from exo_dagster.execution.sla_guard import max_runtime_tag  # noqa: F401  (re-exported)
from exo_dagster.spec.models import ClusterBody

_TICKS_CHECKED = 400  # enough to see weekends and month ends in common crons
MIN_FRESHNESS_WINDOW = timedelta(minutes=1)  # Dagster refuses shorter freshness windows
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # fixed, so compiling stays pure and repeatable


def longest_cron_gap(cron: str, tz: str = "UTC") -> timedelta:
    """The longest time between two ticks of `cron` over its next ticks from a fixed date."""
    from exo_dagster.dagster_private import cron_string_iterator

    ticks = list(itertools.islice(cron_string_iterator(_EPOCH.timestamp(), cron, tz), _TICKS_CHECKED))
    return max((b - a for a, b in zip(ticks, ticks[1:])), default=timedelta(days=1))


def freshness_window(spec: ClusterBody) -> timedelta | None:
    """How old the cluster's data may get before the SLA is breached; None without an `sla`."""
    seconds = spec.sla_seconds if spec.sla else None
    if seconds is None:
        return None
    window = timedelta(seconds=seconds)
    crons = [(t.cron, t.timezone) for t in spec.triggers if t.cron]
    if crons:  # several crons: a fresh result is due at least as often as the most frequent one's longest gap
        window += min(longest_cron_gap(cron, tz) for cron, tz in crons)
    return window


def freshness_policy(spec: ClusterBody) -> dg.FreshnessPolicy | None:
    """A time-window freshness policy (fail past the window, warn past the SLA's share before it)."""
    window, seconds = freshness_window(spec), spec.sla_seconds
    if window is None or seconds is None:
        return None
    window = max(window, MIN_FRESHNESS_WINDOW)  # Dagster's floor; a seconds-long SLA still bounds the run itself
    warn = window - timedelta(seconds=seconds) if any(t.cron for t in spec.triggers) else None
    return dg.FreshnessPolicy.time_window(
        fail_window=window, warn_window=warn if warn and warn >= timedelta(minutes=1) else None
    )


def with_freshness(assets_def: dg.AssetsDefinition, spec: ClusterBody) -> dg.AssetsDefinition:
    """The same assets with the cluster's freshness policy (for graph-backed assets, whose
    constructor takes none)."""
    policy = freshness_policy(spec)
    if policy is None:
        return assets_def
    return assets_def.map_asset_specs(lambda asset_spec: dg.apply_freshness_policy(asset_spec, policy))
