"""A step's time limit covers its whole attempt (the output written too) and stops DuckDB, whatever its threads.

Real DuckDB queries that would run for hours (a 10^12-row cross join on 4 threads); each must end within
a second or two of the limit. Steps run through `step_timeout.call` as the compiled steps do.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from exo_dagster.dagster_private import DagsterExecutionInterruptedError
from exo_dagster.execution.sla_guard import SlaGuard
from exo_dagster.runtime import step_timeout
from exo_dagster.sdk import duck
from exo_dagster.sdk.internal import step_limit
from exo_dagster.sdk.table_write import write_parquet_atomic

RUNAWAY = "select sum(a.range * b.range) as s from range(1000000) a, range(1000000) b"
SLACK_S = 2.0  # from the limit to the step's end, at most (measured: about 0.1 s)


def step(timeout: str = "1s"):
    return SimpleNamespace(identifier="runaway", spec=SimpleNamespace(name="Runaway", timeout=timeout))


def runaway_relation(folder: str = ""):
    """A relation that would compute for hours; `folder`: where the sandbox may write (the output's)."""
    con = duck.sandboxed(directories=[folder] if folder else [], settings={"threads": 4})
    return con.sql(RUNAWAY)


def in_thread(fn):
    """fn() in a worker thread (no SIGALRM there); its exception or value, and when it ended."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        box["ended"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    return worker, box


def test_a_lazy_result_computed_while_its_output_is_written_is_stopped_at_the_limit(tmp_path):
    started = time.monotonic()
    rel = step_timeout.call(lambda: runaway_relation(str(tmp_path)), 1.0, step())  # at once: the query has not run yet
    assert time.monotonic() - started < 1.0
    with pytest.raises(step_timeout.StepTimeout, match=r"step `runaway` \(Runaway\) timed out after 1s"):
        write_parquet_atomic(rel, tmp_path / "out.parquet")
    assert time.monotonic() - started < 1.0 + SLACK_S
    assert not list(tmp_path.iterdir())  # no output, not even a temporary file
    assert step_limit.current() is None  # the limit ended with the write


@pytest.mark.slow
def test_a_query_inside_the_satellite_is_stopped_in_a_worker_thread():
    worker, box = in_thread(lambda: step_timeout.call(lambda: runaway_relation().fetchall(), 1.0, step()))
    started = time.monotonic()
    worker.join(1.0 + SLACK_S)
    assert not worker.is_alive() and isinstance(box["error"], step_timeout.StepTimeout)
    helpers = [t for t in threading.enumerate() if t.name == "exo-step-runaway"]
    for helper in helpers:  # the helper thread that ran the query stopped too: DuckDB was interrupted
        helper.join(SLACK_S)
        assert not helper.is_alive()
    assert time.monotonic() - started < 1.0 + 2 * SLACK_S


def test_a_stopped_run_interrupts_every_step_running_in_the_process():
    steps = [
        in_thread(lambda: step_timeout.call(lambda: runaway_relation().fetchall(), None, step(None))) for _ in range(2)
    ]
    time.sleep(0.5)
    stopped = time.monotonic()
    assert step_limit.interrupt_all("the run was stopped") >= 2
    for worker, box in steps:
        worker.join(SLACK_S)
        assert not worker.is_alive()
        assert isinstance(box["error"], step_limit.RunStopped) and str(box["error"]) == "the run was stopped"
        assert box["ended"] - stopped < SLACK_S


def test_an_interrupt_that_lands_between_two_queries_is_not_lost():
    def satellite():
        con = duck.sandboxed(directories=[], settings={"threads": 4})
        con.execute("select 1").fetchall()
        time.sleep(0.6)  # the run is stopped now, while no query runs: DuckDB forgets an idle connection's interrupt
        return con.execute(RUNAWAY).fetchall()

    worker, box = in_thread(lambda: step_timeout.call(satellite, None, step(None)))
    time.sleep(0.2)
    stopped = time.monotonic()
    step_limit.interrupt_all("the run was stopped")
    worker.join(0.6 + SLACK_S)
    assert not worker.is_alive() and isinstance(box["error"], step_limit.RunStopped)
    assert box["ended"] - stopped < 0.6 + SLACK_S


@pytest.mark.slow
def test_the_sla_guard_stops_duckdb_work_in_its_own_process():
    """An in-process run: the guard's SIGINT would reach Python only after DuckDB returned."""

    def run():
        with SlaGuard(1.0) as guard:  # not the main thread: the guard sends no signal, only the interrupt
            try:
                return step_timeout.call(lambda: runaway_relation().fetchall(), None, step(None))
            finally:
                assert guard.expired

    started = time.monotonic()
    worker, box = in_thread(run)
    worker.join(1.0 + SLACK_S)
    assert not worker.is_alive()
    # as Dagster's own SIGINT handler would raise it: the executor then ends the run with "SLA exceeded"
    assert isinstance(box["error"], DagsterExecutionInterruptedError) and str(box["error"]).startswith("SLA exceeded")
    assert box["ended"] - started < 1.0 + SLACK_S


def test_after_the_output_is_written_nothing_interrupts_the_connections_again(tmp_path):
    con_box = {}

    def satellite():
        con_box["con"] = duck.sandboxed(directories=[str(tmp_path)])
        return con_box["con"].sql("select 42 as n")

    rel = step_timeout.call(satellite, 0.3, step("300ms"))
    write_parquet_atomic(rel, tmp_path / "out.parquet")  # within the limit: written, and the limit ends
    time.sleep(0.6)  # past the deadline: no timer fired
    assert con_box["con"].execute("select count(*) from range(3000000)").fetchall() == [(3000000,)]
    assert step_limit.current() is None
