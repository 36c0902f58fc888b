"""`exo query` runs on a connection that cannot write: no statement, of any kind, changes a file.

The statement filter in `views_query.query` is bypassed here on purpose: every write is sent straight to
the connection `exo query` runs on (`read_only_connection`), and must fail there, with nothing changed
under the data folder, in the working folder or beside the catalog.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from exo_dagster.storage import output_views, read_only_files
from exo_dagster.storage.views_query import QueryError, query, read_only_connection


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under `folder`: content hash and mtime (folders: their names only)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        if p.is_file()
        else ("dir", 0)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A data folder with a catalog: one plain output, one partitioned output (two partitions), another file."""
    data = tmp_path / "data"
    (data / "outputs" / "c" / "parts").mkdir(parents=True)
    con = duckdb.connect()
    out = data / "outputs" / "c" / "out.parquet"
    con.execute(f"copy (select 1 as a, 'x' as b) to '{out}'")
    for key in ("k1", "k2"):
        con.execute(f"copy (select 2 as a) to '{data / 'outputs' / 'c' / 'parts' / key}.parquet'")
    con.execute(f"copy (select 'secret' as s) to '{data / 'other.parquet'}'")
    (data / "other.csv").write_text("s\nsecret\n")
    con.close()
    catalog = str(data / "catalog.duckdb")
    output_views.register_view("c", "o", f"read_parquet('{out}')", path=catalog)
    output_views.register_view(
        "c", "p", output_views.partitions_source(str(data / "outputs" / "c" / "parts")), path=catalog
    )
    cwd = tmp_path / "cwd"
    (cwd / ".tmp").mkdir(parents=True)  # DuckDB's default spill folder exists: still not writable
    monkeypatch.chdir(cwd)
    return data


def write_attempts(data: Path) -> list[str]:
    out = data / "outputs" / "c" / "out.parquet"
    parts = data / "outputs" / "c" / "parts"
    ro = read_only_files.PREFIX
    row = "(select 9 as a, 'forged' as b)"
    targets = [
        f"{out}",
        f"{ro}{out}",
        f"{parts}/fake.parquet",
        f"{ro}{parts}/fake.parquet",
        f"{parts}/k1.parquet",
        f"{ro}{parts}/k1.parquet",
        f"{data}/new.csv",
        ".tmp/x.csv",
        "x.csv",
        f"{ro}{parts}/../out.parquet",
    ]
    attempts = []
    for target in targets:
        attempts += [
            f"copy {row} to '{target}'",
            f"copy {row} to '{target}' (use_tmp_file false)",
            f"explain analyze copy {row} to '{target}' (use_tmp_file false)",
            f"copy {row} to '{target}' (format csv, overwrite true)",
        ]
    attempts += [
        f"copy {row} to '{ro}{parts}' (format parquet, partition_by (b), overwrite_or_ignore true)",
        f"export database '{data}/dump'",
        f"export database '{ro}{parts}/dump'",
        f"attach '{data}/x.duckdb' as x",
        f"attach '{ro}{parts}/x.duckdb' as x",
        f"attach '{data}/catalog.duckdb' as c2",
        f"attach '{ro}{data}/catalog.duckdb' as c2",
        f"attach '{data}/catalog.duckdb' as c3 (read_only)",
        "install httpfs",
        "load httpfs",
        "force install parquet",
        "set enable_external_access = true",
        "reset enable_external_access",
        "set lock_configuration = false",
        f"set temp_directory = '{data}'",
        f"set allowed_directories = ['{data}/']",
        f"set allowed_paths = ['{out}']",
        f"pragma profiling_output = '{data}/profile.json'",
        "pragma enable_profiling = 'json'",
        f"call enable_logging(storage = 'file', storage_path = '{data}/logs')",
        "create persistent secret s (type s3, key_id 'a', secret 'b')",
        f"create table t as select * from read_parquet('{ro}{data}/other.parquet')",
    ]
    return attempts


def test_no_write_through_the_connection_exo_query_runs_on(data, tmp_path):
    before = fingerprint(tmp_path)
    attempts = write_attempts(data)
    con = read_only_connection(str(data / "catalog.duckdb"))
    try:
        written = []
        for sql in attempts:
            try:
                con.execute(sql).fetchall()
            except duckdb.Error:
                continue
            written.append(sql)
        assert written == []  # 0 of len(attempts) writes got through
        assert fingerprint(tmp_path) == before
        # and the outputs are still exactly what they were, through the same connection
        assert con.execute("select * from c.o").fetchall() == [(1, "x")]
        assert con.execute("select a, partition from c.p order by partition").fetchall() == [(2, "k1"), (2, "k2")]
    finally:
        con.close()
    assert len(attempts) >= 60


@pytest.mark.slow
def test_every_write_through_exo_query_fails_with_a_message_and_changes_nothing(data, tmp_path):
    before = fingerprint(tmp_path)
    for sql in write_attempts(data):
        with pytest.raises(QueryError) as error:
            query(sql, str(data / "catalog.duckdb"))
        assert "Traceback" not in str(error.value) and str(error.value).strip()
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize("target", ["{out}", "{ro}{out}", "{ro}{parts}/fake.parquet"])
def test_explain_analyze_copy_onto_an_output_says_read_only(data, target):
    out, parts = data / "outputs" / "c" / "out.parquet", data / "outputs" / "c" / "parts"
    target = target.format(out=out, parts=parts, ro=read_only_files.PREFIX)
    with pytest.raises(QueryError, match="read-only") as error:
        query(f"explain analyze copy (select 9 as a) to '{target}' (use_tmp_file false)", str(data / "catalog.duckdb"))
    assert "Traceback" not in str(error.value)
    assert query("select a, b from c.o", str(data / "catalog.duckdb")).rows == [(1, "x")]


def test_only_the_outputs_can_be_read(data):
    catalog = str(data / "catalog.duckdb")
    ro = read_only_files.PREFIX
    parts = data / "outputs" / "c" / "parts"
    assert query("select count(*) from p", catalog).rows == [(2,)]
    for sql in (
        f"select * from read_csv('{data}/other.csv')",
        f"select * from read_parquet('{data}/other.parquet')",
        f"select * from read_parquet('{ro}{data}/other.parquet')",
        f"select * from read_parquet('{ro}{parts}/../../../other.parquet')",
        f"select * from read_csv('{ro}/etc/passwd')",
        f"select * from read_text('{ro}{data}/catalog.duckdb')",
        f"select * from glob('{ro}{data}/*')",
        f"select * from read_parquet('{ro}{data}/*/*/*.parquet')",
    ):
        with pytest.raises(QueryError) as error:
            query(sql, catalog)
        assert "secret" not in str(error.value) and "Traceback" not in str(error.value)


def test_the_catalog_is_opened_read_only_and_closed_before_the_query_runs(data):
    catalog = str(data / "catalog.duckdb")
    con = read_only_connection(catalog, "select * from c.o")
    try:
        attached = con.execute("select database_name, path from duckdb_databases() where not internal").fetchall()
        assert attached == [("memory", None)]  # the catalog file is not open at all while the query runs
        assert con.execute(
            "select current_setting('temp_directory'), current_setting('lock_configuration'), "
            "current_setting('enable_external_access')"
        ).fetchall() == [("", True, False)]
    finally:
        con.close()
    # a writer can take the catalog at once (DuckDB's single-writer lock is not held by a reader)
    with duckdb.connect(catalog) as writer:
        writer.execute("select 1")


def test_a_view_whose_files_are_gone_is_named_when_the_query_fails(data):
    (data / "outputs" / "c" / "out.parquet").unlink()
    with pytest.raises(QueryError) as error:
        query("select * from c.o", str(data / "catalog.duckdb"))
    assert "c.o cannot be read now" in str(error.value) and "views in" in str(error.value)
    assert query("select count(*) from c.p", str(data / "catalog.duckdb")).rows == [(2,)]


def test_the_read_only_filesystem_refuses_every_write(tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.parquet").write_bytes(b"PAR1")
    fs = read_only_files.ReadOnlyFiles(read_only_files.PROTOCOL, LocalFileSystem(), folders=[str(tmp_path / "parts")])
    target = read_only_files.local_url(str(tmp_path / "parts" / "a.parquet"))
    assert fs.open(target, "rb").read() == b"PAR1"
    for write in (
        lambda: fs.open(target, "wb"),
        lambda: fs.open(target, "ab"),
        lambda: fs.open(target, "rb+"),
        lambda: fs.rm(target),
        lambda: fs.mv(target, target + ".x"),
        lambda: fs.touch(target + ".y"),
        lambda: fs.mkdir(target + "-dir"),
        lambda: fs.makedirs(target + "-dir"),
        lambda: fs.rmdir(target),
        lambda: fs.pipe_file(target, b"x"),
        lambda: fs.put_file(target, target + ".z"),
        lambda: fs.cp_file(target, target + ".c"),
    ):
        with pytest.raises(read_only_files.ReadOnly):
            write()
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["a.parquet"]
    assert (tmp_path / "parts" / "a.parquet").read_bytes() == b"PAR1"


@pytest.mark.slow
def test_threads_reading_one_file_each_get_their_own_bytes(tmp_path):
    """DuckDB's threads share a handle and each seeks then reads: a position per thread keeps them apart."""
    con = duckdb.connect()
    big = tmp_path / "outputs" / "big.parquet"
    big.parent.mkdir()
    con.execute(f"copy (select i, md5(i::varchar) m from range(2000000) t(i)) to '{big}' (row_group_size 20000)")
    catalog = str(tmp_path / "catalog.duckdb")
    output_views.register_view("c", "big", f"read_parquet('{big}')", path=catalog)
    expected = con.execute(f"select count(*), sum(i), min(m), max(m), sum(hash(m)) from '{big}'").fetchall()
    for _ in range(3):
        assert query("select count(*), sum(i), min(m), max(m), sum(hash(m)) from c.big", catalog).rows == expected
