"""Helpers shared by the scale-out tests: write clusters, load jobs as other processes do, read run records."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from exo_dagster.execution.lease_audit import overlapping, run_leases  # noqa: F401 - re-exported for the tests
from tests.services import POSTGRES, postgres_url

REPO = Path(__file__).resolve().parents[2]
DEFS_FILE = Path(__file__).with_name("scaleout_defs.py")
PROBE = "exo-probe "


def cluster_yaml(identifier: str, steps: list[dict[str, Any]], **cluster: Any) -> str:
    """steps: [{id, kind: gpu|cpu, seconds, resources?, fail?}] -> a dataflow cluster of probe satellites."""
    lines = ["version: 0.0.1b", "cluster:", f"  identifier: {identifier}", "  execution: dataflow"]
    for key, value in cluster.items():
        lines.append(f"  {key.replace('_', '-')}: {json.dumps(value)}")
    lines.append("  satellites:")
    for s in steps:
        config = {"seconds": s.get("seconds", 0.0), **({"fail": True} if s.get("fail") else {})}
        lines += [
            f"    - name: {s['id']}",
            f"      uses: satellite/exotest/{s['kind']}-probe",
            f"      identifier: {s['id']}",
            f"      config: {json.dumps(config)}",
        ]
        if s.get("resources") is not None:
            lines.append(f"      resources: {json.dumps(s['resources'])}")
    return "\n".join(lines) + "\n"


def write_clusters(folder: Path, monkeypatch, **texts: str) -> Path:
    """Write cluster files, point EXO_TEST_CLUSTERS (read by the defs file in every process) at them, and
    return this test's own copy of scaleout_defs.py: Dagster caches a code file by its module name, so a
    shared file would hand a later test the clusters of an earlier one."""
    files = []
    for name, text in texts.items():
        path = folder / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    monkeypatch.setenv("EXO_TEST_CLUSTERS", os.pathsep.join(str(f) for f in files))
    defs = folder / f"exo_test_defs_{uuid.uuid4().hex[:12]}.py"
    shutil.copyfile(DEFS_FILE, defs)
    return defs


def make_home(folder: Path, extra_yaml: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + extra_yaml)
    return folder


def recon_job(job_name: str, defs_file: Path):
    """The job as a step process / Celery worker / pod loads it: by file pointer."""
    repo = ReconstructableRepository.for_file(str(defs_file), "defs", working_directory=str(REPO))
    return repo.get_reconstructable_job(job_name)


def quiet(run_config: dict | None = None) -> dict:
    return {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def short(step_key: str) -> str:
    return step_key.split("__", 1)[0]  # the op name leads with the step identifier


def probes(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """What each probe step logged about itself, by step identifier."""
    out = {}
    for record in instance.all_logs(run_id):
        message = record.user_message or ""
        if PROBE in message and not record.dagster_event:
            data = json.loads(message[message.index(PROBE) + len(PROBE) :])
            out[data["step"]] = data
    return out


leases = run_leases  # read back from the run's event log (exo_dagster.execution.lease_audit)


def events_of(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [r for r in instance.all_logs(run_id) if r.dagster_event and r.dagster_event.event_type == kind]


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every error message of the run, concatenated."""
    texts = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        error = getattr(data, "error", None)
        if error is not None:
            texts.append(error.to_string())
        if record.user_message:
            texts.append(record.user_message)
    return "\n".join(texts)


def pg_params(url: str) -> dict[str, Any]:
    """psycopg2's connect arguments for a postgresql:// URL (no database: each test makes its own)."""
    parts = urlsplit(url)
    params: dict[str, Any] = {"host": parts.hostname, "port": parts.port, "user": parts.username or "postgres"}
    return params | ({"password": parts.password} if parts.password else {})


PG = pg_params(POSTGRES.url)  # where the tests' databases live (EXO_TEST_POSTGRES_URL; trust authentication)


def pg_url(db: str) -> str:
    """The postgresql:// URL of database `db` on the tests' server."""
    auth = PG["user"] + (f":{PG['password']}" if "password" in PG else "")
    return f"postgresql://{auth}@{PG['host']}:{PG['port']}/{db}"


@contextlib.contextmanager
def pg_database(prefix: str = "exo_test"):
    """A fresh PostgreSQL database for one test, dropped afterwards; skips the test when PostgreSQL is absent."""
    import psycopg2
    import pytest

    server = pg_params(postgres_url())
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=5, **server)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {server['host']}:{server['port']} refused user {server['user']}: {exc}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def pg_query(db: str, sql: str, *params) -> list[tuple]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(dbname=db, connect_timeout=5, **PG)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def use_pg(monkeypatch, db: str, password: str) -> None:
    """The EXO_PG_* environment the deploy/ dagster.yaml files read."""
    for key, value in {
        "EXO_PG_HOST": PG["host"],
        "EXO_PG_PORT": str(PG["port"]),
        "EXO_PG_DB": db,
        "EXO_PG_USER": PG["user"],
        "EXO_PG_PASSWORD": password,
    }.items():
        monkeypatch.setenv(key, value)
