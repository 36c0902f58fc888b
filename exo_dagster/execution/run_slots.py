"""A cluster's `concurrency: N`: at most N of its runs at once, whichever way they were launched.

Runs of such a cluster carry the run tag `exo/concurrency` = `N:<project>/<name>`. Two mechanisms read it:

- the run queue (run_queue.ExoRunCoordinator): the daemon keeps queued runs back, as it does for
  any tag concurrency limit;
- the run guard (`wait_for_slot`, called by run_executor.GuardedExecutor before any step runs):
  `dagster job execute`, `exo run` and asset-selection runs never pass through the queue. A run
  waits while N runs of its cluster that started before it (ordered by start time, then run id) are
  still running. The order is total, so the earliest waiting run always proceeds: no deadlock.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import dagster as dg

CONCURRENCY_TAG = "exo/concurrency"
POLL_SECONDS = 1.0
SETTLE_SECONDS = 0.5  # a run that started a moment earlier may not be visible yet: look twice
REPORT_EVERY_SECONDS = 60.0
RUNNING = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
CANCELLED = {dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED}


def concurrency_tag(limit: int, identifier: str) -> str:
    """The tag value: the limit travels with it, so the run queue needs no code location to read it."""
    return f"{limit}:{identifier}"


def parse_tag(value: str) -> tuple[int, str] | None:
    """(limit, cluster identifier) of a tag value; None for one exo did not write."""
    limit, _, identifier = value.partition(":")
    try:
        number = int(limit)
    except ValueError:
        return None
    return (number, identifier) if number >= 1 and identifier else None


class SlotWaitCancelled(Exception):
    """The run was cancelled while it waited for a slot."""


def running_ahead(instance: dg.DagsterInstance, run_id: str, value: str) -> list[dg.RunRecord]:
    """Runs with this tag value that are running and started before `run_id` (start time, then id)."""
    records = instance.get_run_records(dg.RunsFilter(statuses=RUNNING, tags={CONCURRENCY_TAG: value}))
    mine = next((r for r in records if r.dagster_run.run_id == run_id), None)
    key = _order(mine) if mine is not None else (float("inf"), run_id)
    return [r for r in records if r.dagster_run.run_id != run_id and r.start_time is not None and _order(r) < key]


def wait_for_slot(instance: dg.DagsterInstance, run_id: str, value: str | None,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Return once the run may start its steps; yield a message to log whenever it (still) waits.
    Raise SlotWaitCancelled when the run is cancelled meanwhile."""
    parsed = parse_tag(value) if value else None
    if parsed is None:
        return
    limit, identifier = parsed
    reported, clear_once = 0.0, False
    while True:
        ahead = running_ahead(instance, run_id, value)
        if len(ahead) < limit:
            if clear_once:
                return
            clear_once = True
            sleep(SETTLE_SECONDS)
            continue
        clear_once = False
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in CANCELLED:
            raise SlotWaitCancelled(f"cancelled while waiting for a slot of cluster/{identifier}")
        now = time.monotonic()
        if now - reported >= REPORT_EVERY_SECONDS:
            reported = now
            yield (f"waiting for a slot ({len(ahead)} of cluster/{identifier} running, `concurrency: {limit}`): "
                   f"{', '.join(r.dagster_run.run_id[:8] for r in ahead)}")
        sleep(POLL_SECONDS)


def _order(record: dg.RunRecord) -> tuple[float, str]:
    start = record.start_time
    return (start if start is not None else float("inf"), record.dagster_run.run_id)
