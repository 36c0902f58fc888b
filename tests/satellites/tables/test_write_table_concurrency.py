"""Two runs writing one target at once lose nothing: 20 concurrent append pairs (Parquet, CSV, DuckDB) and upsert
pairs."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import duckdb
import polars as pl
import pytest

from exo_dagster.sdk.internal import temp_files
from satellites.tables.write_table import WriteTableConfig, write_table

PAIRS = 20
ROWS = 50


def _writer(tmp: str, who: int, barrier, targets: list[str]) -> None:
    from exo_dagster import StepContext, StoredTable

    for round_ in range(PAIRS):
        source = os.path.join(tmp, f"src-{who}-{round_}.parquet")
        pl.DataFrame({"who": [who] * ROWS, "round": [round_] * ROWS, "i": list(range(ROWS))}).write_parquet(source)
        ctx = StepContext(
            cluster="t/c",
            step="w",
            run_id=f"r{who}",
            input={},
            rows=None,
            tables={},
            previous=StoredTable(source, name="rows"),
            secrets={},
            base_dir=tmp,
            data_dir=os.path.join(tmp, "data"),
        )
        for target in targets:
            barrier.wait(timeout=120)
            fmt = "duckdb" if target.endswith(".duckdb") else "auto"
            mode, key = ("upsert", ["who", "round", "i"]) if target.startswith("upsert") else ("append", [])
            write_table(ctx, WriteTableConfig(path=target, mode=mode, key=key, format=fmt, table="rows"))


@pytest.mark.slow
def test_twenty_concurrent_append_pairs_lose_no_row(tmp_path):
    targets = ["out.parquet", "out.csv", "out.duckdb", "upsert.parquet"]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), who, barrier, targets)) for who in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    data = tmp_path / "data"
    expected = PAIRS * 2 * ROWS
    frames = {
        "out.parquet": pl.read_parquet(data / "out.parquet"),
        "out.csv": pl.read_csv(data / "out.csv"),
        "upsert.parquet": pl.read_parquet(data / "upsert.parquet"),
    }
    with duckdb.connect(str(data / "out.duckdb"), read_only=True) as con:
        frames["out.duckdb"] = con.sql("select * from rows").pl()
    lost = {name: expected - frame.height for name, frame in frames.items()}
    assert lost == {"out.parquet": 0, "out.csv": 0, "out.duckdb": 0, "upsert.parquet": 0}
    for frame in frames.values():
        assert frame.unique().height == expected  # every (who, round, i) exactly once
    assert sorted(p.name for p in data.iterdir()) == ["locks", "out.csv", "out.duckdb", "out.parquet", "upsert.parquet"]


@pytest.mark.slow
def test_duckdb_target_held_by_another_process_is_waited_for(tmp_path, make_ctx, stored, monkeypatch):
    """A DuckDB file held by a process outside exo (a shell): the write waits for it instead of failing."""
    target = tmp_path / "data" / "db.duckdb"
    target.parent.mkdir()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(target), ready, 1.5))
    holder.start()
    assert ready.wait(60)
    started = time.monotonic()
    out = write_table(
        make_ctx(previous=stored("t", pl.DataFrame({"a": [1, 2]}))),
        WriteTableConfig(path="db.duckdb", table="t", mode="append"),
    )
    holder.join(60)
    assert out["rows"].to_list() == [3] and time.monotonic() - started > 0.5
    monkeypatch.setenv("EXO_LOCK_TIMEOUT", "0.3")
    holder = ctx.Process(target=_hold, args=(str(target), ready, 3))
    ready.clear()
    holder.start()
    assert ready.wait(60)
    with pytest.raises(duckdb.IOException, match="lock"):
        write_table(
            make_ctx(previous=stored("t", pl.DataFrame({"a": [1]}))),
            WriteTableConfig(path="db.duckdb", table="t", mode="append"),
        )
    holder.join(60)


def _hold(path: str, ready, seconds: float) -> None:
    con = duckdb.connect(path)
    con.execute("create table if not exists t as select 0 as a")
    ready.set()
    time.sleep(seconds)
    con.close()


def test_orphaned_temp_files_of_killed_writes_are_swept(tmp_path, make_ctx, stored):
    folder = tmp_path / "data"
    folder.mkdir()
    dead = ctx_dead_pid()
    orphan = folder / f".out.parquet.{dead}-{'a' * 32}.tmp"
    old_style = folder / f".out.parquet.{'b' * 32}.tmp"
    live = folder / f".out.parquet.{os.getpid()}-{'c' * 32}.tmp"  # a writer still running
    other = folder / f".other.parquet.{dead}-{'d' * 32}.tmp"  # another target's
    for f in (orphan, old_style, live, other):
        f.write_bytes(b"half a file")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    write_table(make_ctx(previous=stored("t", pl.DataFrame({"a": [1]}))), WriteTableConfig(path="out.parquet"))
    assert not orphan.exists() and not old_style.exists()
    assert live.exists() and other.exists()
    assert temp_files.sweep(str(folder / "other.parquet")) == [str(other)]


def ctx_dead_pid() -> int:
    """The pid of a process that has finished."""
    proc = mp.get_context("spawn").Process(target=int)
    proc.start()
    proc.join()
    return proc.pid
