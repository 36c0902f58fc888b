"""Per-row work: concurrent, in order, cached across runs, errors collected or fatal."""

from __future__ import annotations

import asyncio
import threading
import time

import polars as pl
import pytest

from exo_dagster.sdk.row_cache import RowCache, row_key
from exo_dagster.sdk.row_map import RowFailed, RowStats, map_rows

IDENTITY = ("satellite/test/double", "1.0.0", {"factor": 2})


def test_results_in_input_order_with_errors_collected(tmp_path):
    calls: list[int] = []

    def double(row, key):
        calls.append(row["x"])
        if row["x"] == 3:
            raise ValueError("three is bad")
        time.sleep(0.001 * (10 - row["x"]))  # finish out of order
        return {"y": row["x"] * 2}

    stats = RowStats()
    with RowCache(str(tmp_path / "c.sqlite")) as cache:
        out = map_rows(
            double,
            pl.DataFrame({"x": list(range(10))}),
            identity=IDENTITY,
            step="s",
            cache=cache,
            concurrency=4,
            stats=stats,
        )
    assert out["y"].to_list() == [0, 2, 4, None, 8, 10, 12, 14, 16, 18]
    assert out["_error"].to_list()[3] == "ValueError: three is bad" and out["_error"].null_count() == 9
    assert out["_row_key"][0] == row_key(*IDENTITY, {"x": 0})
    assert (stats.rows, stats.computed, stats.failed, stats.cached) == (10, 9, 1, 0)


def test_rerun_skips_finished_rows_and_retries_failed_ones(tmp_path):
    path = str(tmp_path / "c.sqlite")
    seen: list[int] = []
    fail = {5}

    def work(row, key):
        seen.append(row["x"])
        if row["x"] in fail:
            raise RuntimeError("flaky")
        return {"y": row["x"] + 100}

    rows = pl.DataFrame({"x": list(range(50))})
    with RowCache(path) as cache:
        map_rows(work, rows, identity=IDENTITY, step="s", cache=cache, concurrency=8)
    assert sorted(seen) == list(range(50))
    seen.clear()
    fail.clear()
    stats = RowStats()
    with RowCache(path) as cache:
        out = map_rows(work, rows, identity=IDENTITY, step="s", cache=cache, concurrency=8, stats=stats)
    assert seen == [5]  # only the row that had failed
    assert out["y"].to_list() == [x + 100 for x in range(50)] and (stats.cached, stats.computed) == (49, 1)
    # another config is other work: nothing is reused
    seen.clear()
    with RowCache(path) as cache:
        map_rows(work, rows.head(3), identity=("satellite/test/double", "1.0.0", {"factor": 3}), step="s", cache=cache)
    assert sorted(seen) == [0, 1, 2]


def test_crash_halfway_then_rerun_recomputes_no_finished_row(tmp_path):
    path = str(tmp_path / "c.sqlite")
    computed: list[int] = []
    lock = threading.Lock()

    def work(row, key):
        if row["x"] == 600:
            raise KeyboardInterrupt  # not a row error: the whole process goes down
        with lock:
            computed.append(row["x"])
        return {"ok": True}

    rows = pl.DataFrame({"x": list(range(1000))})
    with pytest.raises(KeyboardInterrupt), RowCache(path) as cache:
        map_rows(work, rows, identity=IDENTITY, step="s", cache=cache, concurrency=4, batch_size=256)
    finished_before = set(computed)
    with RowCache(path) as cache:
        assert cache.count("s") == len(finished_before) > 0
    computed.clear()
    with RowCache(path) as cache:
        map_rows(
            lambda row, key: (computed.append(row["x"]), {"ok": True})[1],
            rows,
            identity=IDENTITY,
            step="s",
            cache=cache,
            concurrency=4,
        )
    assert not finished_before & set(computed)
    assert finished_before | set(computed) == set(range(1000))


def test_on_row_error_fail_raises_after_caching_finished_rows(tmp_path):
    path = str(tmp_path / "c.sqlite")

    def work(row, key):
        if row["x"] == 2:
            raise ValueError("no")
        return {"y": 1}

    with pytest.raises(RowFailed, match="row 2: ValueError: no"), RowCache(path) as cache:
        map_rows(work, pl.DataFrame({"x": [0, 1, 2, 3]}), identity=IDENTITY, step="s", cache=cache, on_row_error="fail")
    with RowCache(path) as cache:
        assert cache.count() == 3


def test_async_functions_run_concurrently(tmp_path):
    active = {"now": 0, "max": 0}

    async def slow(row, key):
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0.02)
        active["now"] -= 1
        return {"y": row["x"]}

    started = time.perf_counter()
    out = map_rows(slow, pl.DataFrame({"x": list(range(64))}), identity=IDENTITY, step="s", cache=None, concurrency=16)
    assert out["y"].to_list() == list(range(64))
    assert active["max"] == 16
    assert time.perf_counter() - started < 64 * 0.02 / 2  # far from one at a time
