"""50,000 rows through the batched row map: group-committed cache writes stay exact across a crash.

A row is in the row cache only once its result is committed; a re-run after a partial run (a row
function that raises KeyboardInterrupt, or a SIGKILL of the whole process) redoes no cached row,
and every cached result is the one its row produced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import polars as pl
import pytest

from exo_dagster.sdk.internal.row_writer import RowWriter
from exo_dagster.sdk.row_cache import RowCache, row_key, row_keyer
from exo_dagster.sdk.row_map import RowStats, map_rows

ROWS = 50_000
IDENTITY = ("satellite/test/upper", "1.0.0", {"mode": "upper"})
FRAME = pl.DataFrame({"text": [f"row {i}" for i in range(ROWS)]})


def _upper(row, key):
    return {"upper": row["text"].upper()}


def _assert_cache_consistent(path: str) -> dict[str, dict]:
    """Every cached result is its row's own answer (the key says which row it is)."""
    keys = {row_key(*IDENTITY, {"text": f"row {i}"}): f"ROW {i}" for i in range(ROWS)}
    with RowCache(path) as cache:
        cached = cache.get_many(keys)
        assert cache.count("s") == len(cached)  # nothing cached under a key that is not one of our rows
    assert all(value == {"upper": keys[key]} for key, value in cached.items())
    return cached


def test_row_keyer_gives_row_key():
    keyer = row_keyer("satellite/x/y", "2.0", {"b": [1, "é"], "a": None})
    for row in ({"text": "a"}, {"n": 1, "f": 1.5, "none": None, "list": [1, 2], "nested": {"z": 1, "a": 2}}, {}):
        assert keyer(row) == row_key("satellite/x/y", "2.0", {"b": [1, "é"], "a": None}, row)


@pytest.mark.slow
@pytest.mark.parametrize("asynchronous", [False, True])
def test_crash_then_rerun_redoes_no_finished_row(tmp_path, asynchronous):
    path = str(tmp_path / "c.sqlite")
    finished: set[str] = set()
    lock = threading.Lock()

    def record(row):
        if row["text"] == "row 31000":
            raise KeyboardInterrupt  # the process going down, not a row's failure
        with lock:
            finished.add(row["text"])
        return {"upper": row["text"].upper()}

    if asynchronous:

        async def crashing(row, key):
            await asyncio.sleep(0)
            return record(row)
    else:

        def crashing(row, key):
            return record(row)

    with pytest.raises(KeyboardInterrupt), RowCache(path) as cache:
        map_rows(crashing, FRAME.lazy(), identity=IDENTITY, step="s", cache=cache, concurrency=8, batch_size=4096)
    cached = _assert_cache_consistent(path)
    assert len(cached) == len(finished) >= 28_000  # each row that returned was committed, even by a crash

    redone: list[str] = []

    def again(row, key):
        redone.append(row["text"])
        return _upper(row, key)

    stats = RowStats()
    with RowCache(path) as cache:
        out = map_rows(again, FRAME, identity=IDENTITY, step="s", cache=cache, concurrency=8, stats=stats)
    assert not finished & set(redone)
    assert finished | set(redone) == set(FRAME["text"])
    assert (stats.cached, stats.computed, stats.failed) == (len(finished), ROWS - len(finished), 0)
    assert out["upper"].to_list() == [t.upper() for t in FRAME["text"]]
    assert out["_row_key"].to_list() == [row_key(*IDENTITY, {"text": t}) for t in FRAME["text"]]
    assert out["_error"].null_count() == ROWS
    assert len(_assert_cache_consistent(path)) == ROWS


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import polars as pl
    from exo_dagster.sdk.row_cache import RowCache
    from exo_dagster.sdk.row_map import map_rows

    path, rows = sys.argv[1], int(sys.argv[2])

    def work(row, key):
        if row["text"] == "row 27000":
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no flush: whatever was committed is all there is
        return {"upper": row["text"].upper()}

    frame = pl.DataFrame({"text": [f"row {i}" for i in range(rows)]})
    with RowCache(path) as cache:
        map_rows(work, frame, identity=("satellite/test/upper", "1.0.0", {"mode": "upper"}), step="s",
                 cache=cache, concurrency=8, batch_size=4096)
""")


@pytest.mark.slow
def test_sigkill_midway_leaves_only_finished_rows_and_rerun_does_the_rest(tmp_path):
    path = str(tmp_path / "c.sqlite")
    child = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, path, str(ROWS)],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    cached = _assert_cache_consistent(path)
    # group commits: at most one group (512 rows) finished but not committed, and no row after the kill
    assert 27_000 - 512 - 8 <= len(cached) < 27_000 + 8

    redone: list[str] = []

    def again(row, key):
        assert key not in cached, f"{row['text']} was finished and cached, and is being redone"
        redone.append(row["text"])
        return _upper(row, key)

    with RowCache(path) as cache:
        out = map_rows(again, FRAME, identity=IDENTITY, step="s", cache=cache, concurrency=8)
    assert len(redone) == ROWS - len(cached)
    assert out["upper"].to_list() == [t.upper() for t in FRAME["text"]]
    assert len(_assert_cache_consistent(path)) == ROWS


def test_writer_commits_by_size_by_time_and_on_close(tmp_path):
    path = str(tmp_path / "c.sqlite")
    with RowCache(path) as cache, RowCache(path) as other:
        writer = RowWriter(cache, "s", rows=10, interval=3600)  # no timed flush in this part
        for i in range(9):
            writer.put(f"k{i}", {"v": i})
        assert other.count() == 0  # queued, not yet committed: not in the cache
        writer.put("k9", {"v": 9})
        assert other.count() == 10  # the tenth row filled the group: one commit
        writer.put("k10", {"v": 10})
        writer.close()
        assert other.get_many(["k10"]) == {"k10": {"v": 10}}

        ticking = RowWriter(cache, "s", rows=1000, interval=0.01)
        ticking.put("late", {"v": -1})
        seen = threading.Event()
        for _ in range(2000):  # the background flusher commits it without another put or a close
            if other.count("s") == 12:
                seen.set()
                break
            threading.Event().wait(0.005)
        ticking.close()
        assert seen.is_set() and other.get_many(["late"]) == {"late": {"v": -1}}


def test_a_row_repeated_in_a_later_batch_is_computed_once(tmp_path):
    frame = pl.DataFrame({"text": ["a", "b", "c", "d", "a", "e", "b", "a"]})
    calls: list[str] = []

    def work(row, key):
        calls.append(row["text"])
        return {"upper": row["text"].upper()}

    stats = RowStats()
    with RowCache(str(tmp_path / "c.sqlite")) as cache:
        out = map_rows(work, frame, identity=IDENTITY, step="s", cache=cache, concurrency=2, batch_size=4, stats=stats)
    assert sorted(calls) == ["a", "b", "c", "d", "e"]  # the later batches found a and b in the cache
    assert out["upper"].to_list() == ["A", "B", "C", "D", "A", "E", "B", "A"]
    assert (stats.computed, stats.cached) == (5, 3)


@pytest.mark.slow
def test_an_exception_in_the_steps_thread_stops_the_workers_taking_rows(tmp_path):
    """A step timeout (SIGALRM) or Ctrl-C lands in the step's thread while the workers are mid-batch:
    rows in flight finish and are committed, no worker takes another row."""
    import signal as signals

    started: list[str] = []
    lock = threading.Lock()

    def slow(row, key):
        with lock:
            started.append(row["text"])
        threading.Event().wait(0.01)
        return _upper(row, key)

    def alarm(signo, frame):
        raise TimeoutError("the step's timeout")

    previous = signals.signal(signals.SIGALRM, alarm)
    signals.setitimer(signals.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(TimeoutError), RowCache(str(tmp_path / "c.sqlite")) as cache:
            map_rows(slow, FRAME.head(4096), identity=IDENTITY, step="s", cache=cache, concurrency=4, batch_size=4096)
    finally:
        signals.setitimer(signals.ITIMER_REAL, 0)
        signals.signal(signals.SIGALRM, previous)
    taken = len(started)
    assert 0 < taken < 4096  # stopped mid-batch, not after the batch's 4,096 rows (~10 s)
    with RowCache(str(tmp_path / "c.sqlite")) as cache:
        assert cache.count("s") == taken  # each row taken was finished and committed
