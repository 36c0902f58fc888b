"""The sql step's sandbox confines DuckDB's temp files too (issue 21).

DuckDB lets SQL write its `temp_directory` whatever `allowed_directories` says, and by default that is
`<cwd>/.tmp`: a `copy ... to '<cwd>/.tmp/x.csv'` wrote outside the data and cluster folders. Now each
sandboxed database spills to a folder of its own inside the data folder, so a COPY into it stays there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from exo_dagster.sdk import duck
from satellites.tables.sql import SqlConfig, sql

SPILLING = (
    "select count(*) as n from (select m, count(*) from (select md5(i::varchar) m from range(1500000) t(i)) group by m)"
)


def value(result):
    return result.item() if isinstance(result, pl.DataFrame) else result.fetchall()[0][0]


@pytest.fixture
def outside_cwd(tmp_path_factory, monkeypatch) -> Path:
    """A working folder outside the data and cluster folders, with DuckDB's default spill folder in it."""
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / ".tmp").mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_each_database_spills_to_a_folder_of_its_own_inside_the_data_folder(make_ctx, stored, tmp_path, outside_cwd):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    shared = value(sql(ctx, SqlConfig(query="select current_setting('temp_directory') as d from t")))
    own = value(
        sql(
            ctx,
            SqlConfig(
                query="create temp table y as select 1; select current_setting('temp_directory') as d",
                multiple_statements=True,
            ),
        )
    )
    for folder in (shared, own):
        assert Path(folder).parent == tmp_path / "data"
        assert Path(folder).name.startswith(f"{duck.SPILL_PREFIX}{os.getpid()}-")
    assert shared != own


@pytest.mark.parametrize("target", ["{cwd}/.tmp/x.csv", ".tmp/x.csv", "x.csv"])
def test_copy_into_the_working_folders_spill_folder_is_refused(make_ctx, stored, outside_cwd, target):
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    target = target.format(cwd=outside_cwd)
    with pytest.raises(PermissionError, match="Cannot access file"):
        sql(ctx, SqlConfig(query=f"copy (select * from t) to '{target}'"))
    assert [p.name for p in outside_cwd.rglob("*")] == [".tmp"]


def test_a_copy_into_the_spill_folder_stays_inside_the_data_folder(tmp_path, outside_cwd):
    """DuckDB always lets SQL write its temp folder: it is inside the data folder, which a sql step may write."""
    data = tmp_path / "data"
    data.mkdir()
    con = duck.sandboxed(directories=[str(data)], spill=str(data))
    folder = con.execute("select current_setting('temp_directory')").fetchone()[0]
    os.makedirs(folder)
    con.execute(f"copy (select 1 as x) to '{folder}/x.csv'")
    assert (Path(folder) / "x.csv").is_file() and Path(folder).parent == data  # removed at exit (test below)
    con.close()


def test_a_query_that_spills_writes_only_inside_the_data_folder(make_ctx, tmp_path, outside_cwd):
    ctx = make_ctx()
    result = sql(ctx, SqlConfig(query=SPILLING, memory_limit="30MB", threads=1))
    assert value(result) == 1500000
    spills = [p for p in (tmp_path / "data").iterdir() if p.name.startswith(duck.SPILL_PREFIX)]
    assert spills and all(p.is_dir() for p in spills)  # it did spill, there
    assert [p.name for p in outside_cwd.rglob("*")] == [".tmp"]


@pytest.mark.slow
def test_spill_folders_are_removed_at_exit_and_those_of_gone_processes_swept(tmp_path):
    data = tmp_path / "data"
    script = (
        f"from exo_dagster.sdk import duck\n"
        f"con = duck.sandbox_cursor(directories=[{str(data)!r}], spill={str(data)!r},\n"
        f"                          settings={{'memory_limit': '30MB', 'threads': 1}})\n"
        f"assert con.execute({SPILLING!r}).fetchone()[0] == 1500000\n"
        f"import os; print(os.listdir({str(data)!r}))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert duck.SPILL_PREFIX in ran.stdout  # it spilled inside the data folder ...
    assert not [p for p in data.iterdir() if p.name.startswith(duck.SPILL_PREFIX)]  # ... and removed it at exit

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = data / f"{duck.SPILL_PREFIX}{gone.pid}-0123456789ab"
    stale.mkdir()
    (stale / "duckdb_temp_block").write_bytes(b"x" * 10)
    mine = data / f"{duck.SPILL_PREFIX}{os.getpid()}-ba9876543210"
    mine.mkdir()
    folder = duck.spill_folder(str(data))
    assert not stale.exists() and mine.exists()
    assert Path(folder).parent == data and not Path(folder).exists()  # DuckDB makes it when it first spills


def test_no_local_data_folder_means_no_spilling():
    assert duck.spill_folder(None) == "" and duck.spill_folder("s3://bucket/exo") == ""


SELECT_TYPED_WRITES = [
    "select * from enable_logging(storage = 'file', storage_path = '{data}/logs')",
    "select * from enable_profiling()",
    "select * from query('copy (select 1) to ''{data}/q.csv''')",
    "select * from json_execute_serialized_sql(json_serialize_sql('copy (select 1) to ''{data}/j.csv'''))",
    "select * from checkpoint()",
    "select * from read_csv('{data}/../x.csv')",
]


@pytest.mark.parametrize("text", SELECT_TYPED_WRITES)
def test_the_shared_read_only_cursor_runs_only_selects_and_no_select_writes(
    make_ctx, stored, tmp_path, outside_cwd, text
):
    """The shared database may write where a sql step may: it is handed only statements DuckDB's parser calls
    SELECT, none of which writes a file."""
    from satellites.tables.sql import parse

    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    ctx = make_ctx(tables={"t": stored("t", pl.DataFrame({"x": [1]}))})
    text = text.format(data=data)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert all(kind == "SELECT" for kind, _ in parse(text) or ())  # a SELECT, or no statement DuckDB can parse
    try:
        value(sql(ctx, SqlConfig(query=text)))
    except Exception:
        pass
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert [p.name for p in outside_cwd.rglob("*")] == [".tmp"]
