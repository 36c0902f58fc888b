"""The demo cluster end to end: `dagster job execute -m definitions` in a fresh DAGSTER_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

REPO = Path(__file__).resolve().parents[2]
JOB = "exospherehost__orders_report"
STEPS = ("files", "orders", "revenue", "report")
ORDERS_DIR = REPO / "definitions" / "data" / "orders"


def child_env(dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS")}
    env["DAGSTER_HOME"] = str(dagster_home)
    return env


def expected_report() -> pl.DataFrame:
    """The report's rows computed here, from the CSV files, without the product's code."""
    csvs = sorted(ORDERS_DIR.glob("*.csv"))
    assert csvs, f"no order files in {ORDERS_DIR}"
    orders = pl.concat([pl.read_csv(f) for f in csvs])
    return (
        orders.group_by("region")
        .agg(
            pl.len().cast(pl.Int64).alias("orders"),
            pl.col("quantity").sum().alias("units"),
            (pl.col("quantity") * pl.col("unit_price")).sum().round(2).alias("revenue"),
        )
        .sort("region")
    )


def test_demo_job_runs_end_to_end(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "job", "execute", "-m", "definitions", "-j", JOB],
        cwd=REPO,
        env=child_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-5000:]}\nstderr:\n{proc.stderr[-5000:]}"
    )

    # the report: one row per region, the aggregates the demo's SQL promises
    report_path = home / "exo" / "reports" / "orders-by-region.parquet"
    assert report_path.is_file(), f"no report at {report_path}"
    report = pl.read_parquet(report_path)
    expected = expected_report()
    assert report.columns == ["region", "orders", "units", "revenue"]
    assert report["region"].to_list() == ["east", "north", "south", "west"]
    assert expected["region"].to_list() == ["east", "north", "south", "west"]
    assert report.height == 4
    # DuckDB's sum(BIGINT) is a HUGEINT, which lands in Parquet as DOUBLE: compare values, not dtypes,
    # but insist the totals are whole numbers equal to the integer sums.
    assert_frame_equal(report, expected, check_dtypes=False, check_exact=False, abs_tol=1e-9)
    assert report["units"].to_list() == [float(u) for u in expected["units"].to_list()]
    assert report["orders"].sum() == sum(pl.read_csv(f).height for f in ORDERS_DIR.glob("*.csv"))

    # every step's output was stored as Parquet under the job's folder
    outputs = home / "exo" / "outputs" / JOB
    for step in STEPS:
        assert (outputs / f"{step}.parquet").is_file(), f"missing output of step `{step}` in {outputs}"
    assert pl.read_parquet(outputs / "files.parquet").height == len(list(ORDERS_DIR.glob("*.csv")))
    assert pl.read_parquet(outputs / "orders.parquet").height == report["orders"].sum()
    assert_frame_equal(pl.read_parquet(outputs / "revenue.parquet"), report)

    # the instance in that DAGSTER_HOME recorded one successful run with four materializations
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB))
        assert len(runs) == 1, [r.run_id for r in runs]
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        keys = sorted(r.event_log_entry.dagster_event.asset_key.path for r in records)
        assert keys == sorted(["exospherehost", "orders_report", step] for step in STEPS)  # [project, cluster, step]


def test_ai_demo_runs_offline_through_dagster_job_execute(tmp_path):
    """The quickstart's demo: ticket dedupe with a real embedding model, no network, no GPU, no API key."""
    import json

    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**child_env(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "execute",
            "-m",
            "definitions",
            "-j",
            "exospherehost__ticket_dedupe",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstderr:\n{proc.stderr[-5000:]}"
    report = pl.read_parquet(home / "exo" / "reports" / "ticket-duplicates.parquet")
    tickets = [
        json.loads(line)
        for f in sorted((REPO / "definitions" / "data" / "tickets").glob("*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    texts = {t["id"]: t["text"] for t in tickets}
    assert report.height >= 1
    assert (report["similarity"] >= 0.75).all()
    for row in report.iter_rows(named=True):  # every pair names real tickets, with their texts
        assert texts[row["ticket"]] == row["ticket_text"] and texts[row["duplicate_of"]] == row["duplicate_text"]
    embeddings = pl.read_parquet(home / "exo" / "outputs" / "exospherehost__ticket_dedupe" / "embeddings.parquet")
    assert embeddings.height == len(tickets) and embeddings["embedding"].dtype.size == 384


def test_daily_orders_backfills_by_day_with_a_region_input_and_skips_a_day_without_orders(tmp_path):
    """The shipped partitioned example: four days backfilled with `exo run --partition A...B --input`; the
    three days with an order file store their own revenue partition, the day without one is skipped (no
    file, no failure), and the catalog view covers the three stored days."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    exo = Path(sys.executable).parent / "exo"
    proc = subprocess.run(
        [str(exo), "run", "daily_orders.yaml", "--partition", "2026-11-01...2026-11-04", "--input", "region=north"],
        cwd=REPO / "definitions",
        env=child_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "4 of 4 partition runs succeeded" in proc.stdout
    folder = home / "exo" / "outputs" / "exospherehost__daily_orders" / "revenue"
    assert sorted(p.name for p in folder.iterdir()) == [
        "2026-11-01.parquet",
        "2026-11-02.parquet",
        "2026-11-03.parquet",
    ]
    orders = pl.concat([pl.read_csv(f) for f in sorted(ORDERS_DIR.glob("*.csv"))]).filter(pl.col("region") == "north")
    expected = orders.group_by("day").agg(pl.len().alias("orders")).sort("day")
    from exo_dagster.storage.views_query import query

    rows = query(
        "select day, region, orders from daily_orders.revenue order by day", str(home / "exo" / "catalog.duckdb")
    ).rows
    assert rows == [(day, "north", n) for day, n in expected.iter_rows()]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [skipped_day] = [r for r in instance.get_runs() if r.tags.get("dagster/partition") == "2026-11-04"]
        assert skipped_day.status == dg.DagsterRunStatus.SUCCESS
        skipped = {
            e.step_key
            for e in instance.all_logs(skipped_day.run_id)
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_SKIPPED
        }
        assert any(k.startswith("orders__") for k in skipped) and any(k.startswith("revenue__") for k in skipped), (
            skipped
        )
