"""An asset backfill of a partitioned cluster, as the UI launches it, on the real webserver + daemon: the backfill
daemon starts one run per partition (Dagster's implicit asset job, run by exo's asset-job executor) and each stores
its own partition files; the catalog view covers them all."""

from __future__ import annotations

import pytest

from tests.definitions.dagster_stack import serving

pytestmark = pytest.mark.slow  # real Dagster processes on a temporary instance

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/days
  partitions:
    daily: {start: 2026-11-01, end: 2026-11-08}
  satellites:
    - {name: Day, uses: satellite/exospherehost/sql, identifier: day,
       config: {query: "select ${{ partition.key }} as day"}}
    - {name: Total, uses: satellite/exospherehost/sql, identifier: total,
       config: {query: "select day, 1 as n from day"}}
"""
LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("backfill"), {"days": CLUSTER}, location="exo_backfill") as stack:
        yield stack


def test_an_asset_backfill_runs_each_partition_into_its_own_files(stack):
    params = {
        "assetSelection": [{"path": ["t", "days", "day"]}, {"path": ["t", "days", "total"]}],
        "partitionNames": DAYS,
        "fromFailure": False,
    }
    answer = stack.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    backfill = answer["backfillId"]

    def done():
        runs = [r for r in stack.instance.get_runs() if r.tags.get("dagster/backfill") == backfill]
        return runs if len(runs) == len(DAYS) and all(r.is_finished for r in runs) else None

    runs = stack.wait(f"the {len(DAYS)} runs of backfill {backfill}", done)
    assert sorted((r.tags["dagster/partition"], r.status.value) for r in runs) == [(d, "SUCCESS") for d in DAYS], (
        stack.logs()
    )
    folder = stack.data / "outputs" / "t__days" / "total"
    assert sorted(p.name for p in folder.iterdir()) == [f"{d}.parquet" for d in DAYS]

    from exo_dagster.storage.views_query import query

    rows = query("select day, partition from days.total order by day", str(stack.data / "catalog.duckdb")).rows
    assert rows == [(d, d) for d in DAYS]
