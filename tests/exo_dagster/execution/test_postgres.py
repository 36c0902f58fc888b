"""deploy/postgres/dagster.yaml, as shipped, against the PostgreSQL on 127.0.0.1:5432: a cluster run
with the local executor lands in Postgres (runs, events), the schedule tables exist, the `gpu` pool
limit is stored there and obeyed, and the password never shows up in what Dagster stores."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from tests.exo_dagster.scaleout_support import (
    REPO,
    cluster_yaml,
    failure_text,
    leases,
    make_home,
    overlapping,
    pg_database,
    pg_query,
    quiet,
    recon_job,
    use_pg,
    write_clusters,
)

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

PASSWORD = "exo-pg-sentinel-5c1d9e"  # trust auth here ignores it; it must still never be stored anywhere


@pytest.fixture
def pg_instance(tmp_path, monkeypatch):
    with pg_database() as db:
        use_pg(monkeypatch, db, PASSWORD)
        home = make_home(tmp_path / "home")
        shutil.copyfile(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
        with dg.DagsterInstance.get() as instance:
            yield instance, db


STEPS = [
    {"id": "g0", "kind": "gpu", "seconds": 0.3},
    {"id": "g1", "kind": "gpu", "seconds": 0.3},
    {"id": "c0", "kind": "cpu", "seconds": 0.1},
]


@pytest.mark.timeout(300)
def test_cluster_runs_on_a_postgres_instance(pg_instance, tmp_path, monkeypatch):
    instance, db = pg_instance
    assert {
        type(s).__name__ for s in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    } == {"PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"}
    defs = write_clusters(tmp_path, monkeypatch, pg=cluster_yaml("exotest/pg-mix", STEPS))
    monkeypatch.setenv("EXO_GPUS", "0,1")

    result = dg.execute_job(
        recon_job("exotest__pg_mix", defs), instance=instance, raise_on_error=False, run_config=quiet()
    )
    assert result.success, failure_text(instance, result.run_id)
    assert pg_query(db, "SELECT status FROM runs WHERE run_id = %s", result.run_id) == [("SUCCESS",)]
    assert pg_query(
        db, "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_SUCCESS'", result.run_id
    ) == [(3,)]
    tables = {
        r[0] for r in pg_query(db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    }
    assert {"runs", "event_logs", "jobs", "job_ticks", "instigators", "concurrency_limits"} <= tables

    # the pool `gpu` is global op concurrency, stored in Postgres: with 1 slot, GPU steps take turns
    instance.event_log_storage.set_concurrency_slots("gpu", 1)
    assert pg_query(db, 'SELECT concurrency_key, "limit" FROM concurrency_limits') == [("gpu", 1)]
    capped = dg.execute_job(
        recon_job("exotest__pg_mix", defs), instance=instance, raise_on_error=False, run_config=quiet()
    )
    assert capped.success, failure_text(instance, capped.run_id)
    held = [(g["step"], "pool-gpu", g["acquired"], g["released"]) for g in leases(instance, capped.run_id)]
    assert len(held) == 2 and overlapping(held) == []  # two free devices, one pool slot: one at a time

    for table, column in (("event_logs", "event"), ("runs", "run_body"), ("run_tags", "value")):
        assert pg_query(db, f"SELECT count(*) FROM {table} WHERE {column} LIKE %s", f"%{PASSWORD}%") == [(0,)], table
