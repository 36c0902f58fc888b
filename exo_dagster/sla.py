"""`sla: <duration>` (6h, 90m, 5s...) -> the run's max runtime tag (set by the compiler) and a freshness policy on the cluster's assets.

A run that takes longer than the SLA is failed by Dagster's run monitoring (`dagster/max_runtime`).
Freshness says when the data itself is late, which the UI shows on every asset (Dagster's freshness
daemon evaluates it; a breach turns the asset's freshness to FAIL):

- scheduled clusters (`trigger.cron`): a fresh result is due every tick and takes at most the SLA,
  so the data may be at most (longest gap between ticks + SLA) old;
- other clusters (files, after, manual): the data may be at most the SLA old.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import dagster as dg

from .spec import ClusterBody

_TICKS_CHECKED = 400  # enough to see weekends and month ends in common crons
MIN_FRESHNESS_WINDOW = timedelta(minutes=1)  # Dagster refuses shorter freshness windows
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)  # fixed, so compiling stays pure and repeatable


def longest_cron_gap(cron: str, tz: str = "UTC") -> timedelta:
    """The longest time between two ticks of `cron` over its next ticks from a fixed date."""
    from dagster._utils.schedules import cron_string_iterator

    ticks = list(itertools.islice(cron_string_iterator(_EPOCH.timestamp(), cron, tz), _TICKS_CHECKED))
    return max((b - a for a, b in zip(ticks, ticks[1:])), default=timedelta(days=1))


def max_runtime_tag(seconds: float) -> str:
    """`dagster/max_runtime` as Dagster reads it (a number of seconds), never in exponent notation."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


def freshness_window(spec: ClusterBody) -> timedelta | None:
    """How old the cluster's data may get before the SLA is breached; None without an `sla`."""
    if not spec.sla:
        return None
    window = timedelta(seconds=spec.sla_seconds)
    if spec.trigger and spec.trigger.cron:
        window += longest_cron_gap(spec.trigger.cron, spec.trigger.timezone)
    return window


def freshness_policy(spec: ClusterBody) -> dg.FreshnessPolicy | None:
    """A time-window freshness policy (fail past the window, warn past the SLA's share before it)."""
    window = freshness_window(spec)
    if window is None:
        return None
    window = max(window, MIN_FRESHNESS_WINDOW)  # Dagster's floor; a seconds-long SLA still bounds the run itself
    warn = window - timedelta(seconds=spec.sla_seconds) if spec.trigger and spec.trigger.cron else None
    return dg.FreshnessPolicy.time_window(fail_window=window, warn_window=warn if warn and warn >= timedelta(minutes=1) else None)


def with_freshness(assets_def: dg.AssetsDefinition, spec: ClusterBody) -> dg.AssetsDefinition:
    """The same assets with the cluster's freshness policy (for graph-backed assets, whose
    constructor takes none)."""
    policy = freshness_policy(spec)
    if policy is None:
        return assets_def
    return assets_def.map_asset_specs(lambda asset_spec: dg.apply_freshness_policy(asset_spec, policy))


class SlaGuard:
    """Stops the run from inside once it is past its SLA, so the SLA holds with or without a daemon.

    Dagster's run monitoring (on in every `deploy/` file) enforces `dagster/max_runtime` only where a
    daemon runs; `dagster job execute` and `exo run` have none. The guard is a timer in the process that
    orchestrates the run: when it fires, it interrupts the run as Ctrl-C would (Dagster's executors
    stop their steps on SIGINT) and the executor wrapper turns that into "SLA exceeded".
    """

    def __init__(self, seconds: float | None, started: float | None = None):
        self.seconds, self.started = seconds, started if started is not None else time.time()
        self.expired = self.signalled = False
        self._lock = threading.Lock()
        self._done = False
        self._timer = None

    def message(self) -> str:
        return f"SLA exceeded: the run took longer than its sla of {self.seconds:g}s and was stopped"

    def __enter__(self) -> "SlaGuard":
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
        if self._signal:
            self.signalled = True
            os.kill(os.getpid(), signal.SIGINT)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
