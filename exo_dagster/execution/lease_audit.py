"""A run's GPU leases read back from its event log, and a check that no device was shared.

The local executor records every lease as an engine event (`exo/lease` acquired/released,
`exo/devices`, `at`); this turns them into intervals an operator, a test or a benchmark can audit.
"""

from __future__ import annotations

import dagster as dg

from exo_dagster import keys


def run_leases(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """[{step, devices, acquired, released}] (wall-clock seconds), `step` being the step's identifier."""
    open_: dict[str, tuple[object, object]] = {}  # step -> (devices, acquired), as the event log holds them
    out: list[dict] = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.is_engine_event or keys.LEASE not in event.engine_event_data.metadata:
            continue
        meta = event.engine_event_data.metadata
        assert record.step_key is not None, "the executor logs each lease for its step (GpuAwareExecutor._lease_event)"
        step = record.step_key.split("__", 1)[0]  # op names lead with the identifier (spec/ir.op_name)
        if meta[keys.LEASE].value == "acquired":
            open_[step] = (meta[keys.DEVICES].value, meta["at"].value)
        else:
            devices, acquired = open_.pop(step)
            out.append({"step": step, "devices": devices, "acquired": acquired, "released": meta["at"].value})
    if open_:
        raise AssertionError(f"leases never given back: {open_}")
    return out


def overlapping(intervals: list[tuple[str, str, float, float]]) -> list[str]:
    """(step, devices, start, end) pairs that used one device at the same time; empty when none did."""
    bad = []
    for i, (s1, d1, a1, b1) in enumerate(intervals):
        for s2, d2, a2, b2 in intervals[i + 1 :]:
            common = set(d1.split(",")) & set(d2.split(","))
            if common and a1 < b2 and a2 < b1:
                bad.append(f"{s1} and {s2} on {sorted(common)}")
    return bad
