"""`exo query`: read-only SQL over the DuckDB catalog of step outputs, run as users run it (a subprocess)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from exo_dagster.storage.query_output import as_table
from exo_dagster.storage.views_query import QueryResult

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

REPO = Path(__file__).resolve().parents[2]
ORDERS = sorted((REPO / "definitions" / "data" / "orders").glob("*.csv"))


def exo(*args: str, dagster_home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "EXO_CATALOG", "DAGSTER_HOME")
    }
    env["DAGSTER_HOME"] = str(dagster_home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")  # this checkout's exo_dagster
    return subprocess.run(
        [sys.executable, "-m", "exo_dagster.cli", *args],
        cwd=cwd or dagster_home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A Dagster home in which the orders demo has run once: its outputs are views in the catalog."""
    home = tmp_path_factory.mktemp("query") / "dagster_home"
    home.mkdir()
    result = exo("run", str(REPO / "definitions" / "demo.yaml"), dagster_home=home)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert (home / "exo" / "catalog.duckdb").is_file()
    return home


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: content hash and mtime."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_count_of_a_view(home):
    result = exo("query", "select count(*) as n from orders_report.orders", dagster_home=home)
    assert result.returncode == 0, result.stderr
    total = sum(pl.read_csv(f).height for f in ORDERS)
    lines = result.stdout.splitlines()
    assert [lines[0].strip(), lines[2].strip(), lines[-1]] == ["n", str(total), "(1 row)"], result.stdout
    # a bare identifier works when one cluster has it
    bare = exo("query", "select count(*) as n from orders", dagster_home=home)
    assert bare.returncode == 0 and bare.stdout == result.stdout, bare.stderr
    described = exo("query", "describe orders_report.revenue", dagster_home=home)
    assert described.returncode == 0 and "region" in described.stdout and "VARCHAR" in described.stdout, (
        described.stderr
    )


def test_table_csv_and_json(home):
    sql = "select region, orders, revenue from orders_report.revenue order by region"
    expected = pl.read_parquet(home / "exo" / "outputs" / "exospherehost__orders_report" / "revenue.parquet").sort(
        "region"
    )
    table = exo("query", sql, dagster_home=home)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["region", "orders", "revenue"] and set(lines[1]) <= {"-", " "}
    assert [line.split()[0] for line in lines[2:-1]] == expected["region"].to_list()
    assert lines[-1] == f"({expected.height} rows)"
    assert len({len(line) for line in lines[1:-1]}) == 1  # aligned: every row as wide as the rule

    as_csv = exo("query", sql, "--format", "csv", dagster_home=home)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["region"] for r in rows] == expected["region"].to_list()
    assert [int(r["orders"]) for r in rows] == expected["orders"].to_list()

    as_json = exo("query", sql, "--format", "json", dagster_home=home)
    records = json.loads(as_json.stdout)
    assert [r["region"] for r in records] == expected["region"].to_list()
    assert [r["revenue"] for r in records] == pytest.approx(expected["revenue"].to_list())


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("create table copy_of as select * from orders_report.orders", "CREATE"),
        ("create view main.v as select 1", "CREATE"),
        ("insert into orders_report.orders select * from orders_report.orders", "INSERT"),
        ("drop view orders_report.orders", "DROP"),
        ("copy (select * from orders_report.orders) to 'stolen.csv'", "COPY"),
        ("attach 'other.duckdb' as other", "ATTACH"),
        ("install httpfs", "LOAD"),
        ("load httpfs", "LOAD"),
        ("export database 'dump'", "EXPORT"),
        ("set enable_external_access = true", "SET"),
        ("pragma enable_profiling", "PRAGMA"),
        ("checkpoint", "CALL"),
    ],
)
def test_writes_are_refused_and_the_catalog_is_unchanged(home, sql, kind):
    before = fingerprint(home / "exo")
    result = exo("query", sql, dagster_home=home)
    assert result.returncode == 1, result.stdout
    assert f"read-only: {kind} statements are refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert fingerprint(home / "exo") == before
    assert not list(home.glob("stolen*")) and not (home / "other.duckdb").exists() and not (home / "dump").exists()


@pytest.mark.parametrize("target", ["{revenue}", "exo-read://{revenue}", "{folder}/forged.parquet", ".tmp/x.csv"])
def test_explain_analyze_copy_cannot_overwrite_an_output_or_add_a_file(home, target):
    """EXPLAIN passes the statement filter: the connection itself refuses the write (issue 21)."""
    folder = home / "exo" / "outputs" / "exospherehost__orders_report"
    target = target.format(revenue=folder / "revenue.parquet", folder=folder)
    (home / ".tmp").mkdir(exist_ok=True)  # DuckDB's default spill folder in the working folder: not writable either
    before = fingerprint(home)
    result = exo(
        "query", f"explain analyze copy (select 1 as forged) to '{target}' (use_tmp_file false)", dagster_home=home
    )
    assert result.returncode == 1 and "read-only" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert fingerprint(home) == before


def test_files_outside_the_outputs_cannot_be_read(home, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    result = exo("query", f"select * from read_csv('{secret}')", dagster_home=home)
    assert result.returncode == 1 and "reads only the step outputs" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_sql_exits_1_with_duckdbs_message(home):
    result = exo("query", "selec count(*) from orders", dagster_home=home)
    assert result.returncode == 1
    assert 'bad SQL: Parser Error: syntax error at or near "selec"' in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    unknown = exo("query", "select * from orders_report.nope", dagster_home=home)
    assert unknown.returncode == 1 and "Catalog Error" in unknown.stderr
    assert "orders_report.orders" in unknown.stderr  # the views there are listed
    several = exo("query", "select 1; select 2", dagster_home=home)
    assert several.returncode == 1 and "runs one" in several.stderr


def test_no_catalog_yet(tmp_path):
    result = exo("query", "select 1", dagster_home=tmp_path)
    assert result.returncode == 1
    assert f"no catalog yet at {tmp_path / 'exo' / 'catalog.duckdb'}: run a cluster first" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "exo").exists()  # looking did not create it


def test_table_text_alignment():
    result = QueryResult(
        ["name", "n", "note"],
        ["VARCHAR", "BIGINT", "VARCHAR"],
        [("a", 1, None), ("bbb", 100, "x"), ("cc", None, "long note")],
    )
    assert as_table(result) == (
        "name     n  note\n----  ----  ---------\na        1  NULL\nbbb    100  x\ncc    NULL  long note\n(3 rows)\n"
    )
    assert (
        as_table(result, max_rows=1).splitlines()[-1]
        == "(3 rows, the first 1 shown; add `limit`, or use --format csv for all)"
    )


def test_catalog_sync_gives_another_host_the_same_views(home, tmp_path):
    """A host that ran none of the steps (its own, empty data folder) reads the same outputs after
    `exo catalog sync`."""
    other = tmp_path / "other_home"
    other.mkdir()
    before = exo("query", "select * from orders_report.revenue order by all", dagster_home=home)
    assert before.returncode == 0, before.stderr
    synced = exo("catalog", "sync", "--outputs", str(home / "exo" / "outputs"), dagster_home=other)
    assert synced.returncode == 0 and "orders_report.revenue" in synced.stdout, synced.stdout + synced.stderr
    after = exo("query", "select * from orders_report.revenue order by all", dagster_home=other)
    assert after.returncode == 0 and after.stdout == before.stdout, after.stderr
