"""Stored outputs: Parquet written atomically, Parquet sources referenced in place, a DuckDB catalog of views."""

from __future__ import annotations

import os

import dagster as dg
import duckdb
import polars as pl
import pytest

from exo_dagster import compile_cluster, parse_cluster

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/ticket-triage
  satellites:
    - name: Source
      uses: satellite/exospherehost/read-table
      identifier: events
      config: {{path: "{source}"}}
    - name: Per kind
      uses: satellite/exospherehost/sql
      identifier: labels
      config: {{query: "select kind, count(*) as n from events group by kind order by kind"}}
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    source = tmp_path / "events.parquet"
    pl.DataFrame({"kind": ["a", "b", "a"], "v": [1, 2, 3]}).write_parquet(source)
    cluster = parse_cluster(CLUSTER.format(source=source), "c.yaml")
    defs = compile_cluster(cluster)
    job = defs.resolve_job_def(cluster.job_name)
    return tmp_path, source, job


def test_parquet_source_is_referenced_and_catalogued(setup):
    tmp_path, source, job = setup
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance)
    assert result.success
    out = tmp_path / "exo" / "outputs" / "test__ticket_triage"
    assert not (out / "events.parquet").exists() and (out / "events.parquet.ref.json").exists()  # no copy
    [events] = list(result.asset_materializations_for_node("events__test__ticket_triage"))
    assert events.metadata["exo/storage"].value == "reference" and events.metadata["dagster/row_count"].value == 3
    assert pl.read_parquet(out / "labels.parquet").to_dicts() == [{"kind": "a", "n": 2}, {"kind": "b", "n": 1}]
    assert sorted(os.listdir(out)) == ["events.parquet.ref.json", "labels.parquet"]  # no temporary files left
    with duckdb.connect(str(tmp_path / "exo" / "catalog.duckdb"), read_only=True) as con:
        assert con.execute("select * from ticket_triage.labels order by kind").fetchall() == [("a", 2), ("b", 1)]
        assert con.execute("select sum(v) from ticket_triage.events").fetchone() == (6,)


def test_changed_source_is_detected_by_downstream(setup):
    tmp_path, source, job = setup
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    pl.DataFrame({"kind": ["z"], "v": [9]}).write_parquet(source)
    os.utime(source, (1, 1))
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(
        instance=instance, op_selection=["labels__test__ticket_triage"], raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "changed after it ran" in failure.event_specific_data.error.to_string()


def test_a_crash_while_writing_leaves_the_old_output(tmp_path):
    from upath import UPath

    from exo_dagster.storage.io_manager import write_parquet_atomic

    target = tmp_path / "out.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(target)
    broken = pl.LazyFrame({"a": ["x"]}).select(pl.col("a").cast(pl.Int64, strict=True))
    with pytest.raises(pl.exceptions.PolarsError):  # the cast fails while writing
        write_parquet_atomic(broken, UPath(str(target)))
    assert pl.read_parquet(target)["a"].to_list() == [1]
    assert os.listdir(tmp_path) == ["out.parquet"]


def test_catalog_rewrites_a_view_only_when_its_source_changes(tmp_path):
    from exo_dagster.storage import output_views as catalog

    path = str(tmp_path / "catalog.duckdb")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(a)
    pl.DataFrame({"x": [2]}).write_parquet(b)
    assert catalog.register_view("c", "t", f"read_parquet('{a}')", path=path)
    first = os.stat(path).st_mtime_ns
    assert catalog.register_view("c", "t", f"read_parquet('{a}')", path=path)
    assert os.stat(path).st_mtime_ns == first  # unchanged view: the DuckDB file was not opened for writing
    assert catalog.register_view("c", "t", f"read_parquet('{b}')", path=path)
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("select x from c.t").fetchall() == [(2,)]


@pytest.mark.slow
def test_catalog_waits_for_a_busy_file_then_gives_up_without_failing(tmp_path):
    from exo_dagster.storage import output_views as catalog

    path = str(tmp_path / "catalog.duckdb")
    source = tmp_path / "a.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(source)
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({path!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        assert catalog.register_view("c", "t", f"read_parquet('{source}')", path=path, wait_s=0.5) is False
    finally:
        holder.kill()
        holder.wait()
    assert catalog.register_view("c", "t", f"read_parquet('{source}')", path=path, wait_s=5)


@pytest.mark.slow
def test_catalog_sees_a_view_another_writer_changed(tmp_path):
    """The index a process remembers is used only while the index file is unchanged: another writer's view wins."""
    import subprocess
    import sys

    from exo_dagster.storage import output_views as catalog

    path = str(tmp_path / "catalog.duckdb")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(a)
    pl.DataFrame({"x": [2]}).write_parquet(b)
    assert catalog.register_view("c", "t", f"read_parquet('{a}')", path=path)
    assert catalog.register_view("c", "t", f"read_parquet('{a}')", path=path)  # remembered
    other = (
        "from exo_dagster.storage import output_views as c; "
        f"assert c.register_view('c', 't', \"read_parquet('{b}')\", path={path!r})"
    )
    subprocess.run([sys.executable, "-c", other], check=True)  # another step process points the view at b
    assert catalog.register_view("c", "t", f"read_parquet('{a}')", path=path)  # ... so this one must write again
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("select x from c.t").fetchall() == [(1,)]


def test_outputs_keep_their_path_metadata_and_log_no_file_lines(setup):
    tmp_path, source, job = setup
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance)
    assert result.success
    [labels] = list(result.asset_materializations_for_node("labels__test__ticket_triage"))
    path = labels.metadata["path"].value
    assert path.endswith(os.path.join("test__ticket_triage", "labels.parquet")) and os.path.exists(path)
    assert labels.metadata["dagster/row_count"].value == 2
    assert [c.name for c in labels.metadata["dagster/column_schema"].value.columns] == ["kind", "n"]
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert len(messages) > 10  # the run's events are there ...
    assert not any(
        m.startswith(("Writing file at", "Loading file from")) for m in messages
    )  # an event-log write each, saved
