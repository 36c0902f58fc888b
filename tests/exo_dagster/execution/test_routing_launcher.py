"""RoutingRunLauncher, configured by deploy/routing/dagster.yaml as shipped: runs submitted with
`dagster job launch` against a PostgreSQL instance and dequeued by a real `dagster-daemon` (Dagster's
default queued run coordinator). GPU runs (run tag `exo/compute: gpu`) go to dagster-celery's
CeleryRunLauncher and execute inside a real Celery worker listening on `gpu-runs`; everything else
goes to Dagster's DefaultRunLauncher (a subprocess of the daemon's code server)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher.base import WorkerStatus

from exo_dagster.execution.routing_launcher import RoutingRunLauncher
from tests.exo_dagster.scaleout_support import (
    REPO,
    cluster_yaml,
    failure_text,
    leases,
    make_home,
    pg_database,
    probes,
    use_pg,
    write_clusters,
)
from tests.services import REDIS, redis_url

BIN = Path(sys.executable).parent
BROKER, BACKEND = f"{REDIS.url}/9", f"{REDIS.url}/10"  # these tests' own Redis dbs (test_celery has 13 and 14)


def _redis(*command: str) -> bytes:
    """One Redis command on db 9 over a raw socket (RESP); skips the test when Redis is absent."""
    url = urlsplit(redis_url())
    address = (url.hostname or "127.0.0.1", url.port or 6379)
    try:
        with socket.create_connection(address, timeout=5) as sock:
            parts = [b"SELECT", b"9"]
            sock.sendall(b"*2\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            sock.recv(64)
            args = [c.encode() for c in command]
            sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
            return sock.recv(64)
    except OSError as exc:
        pytest.fail(f"Redis at {address} did not answer: {exc}")


def _wait_finished(instance, run_id: str, timeout: float = 240) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(1)
    pytest.fail(f"run {run_id} did not finish in {timeout} s: {instance.get_run_by_id(run_id)}")


@pytest.fixture
def routed(tmp_path, monkeypatch):
    _redis("DEL", "gpu-runs")  # nothing stale from an earlier, interrupted run of this test
    with pg_database("exo_route") as db:
        use_pg(monkeypatch, db, "unused-with-trust-auth")
        monkeypatch.setenv("EXO_CELERY_BROKER", BROKER)
        monkeypatch.setenv("EXO_CELERY_BACKEND", BACKEND)
        monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
        home = make_home(tmp_path / "home")
        shutil.copyfile(REPO / "deploy" / "routing" / "dagster.yaml", home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        defs = write_clusters(
            tmp_path,
            monkeypatch,
            gpu=cluster_yaml("exotest/route-gpu", [{"id": "embed", "kind": "gpu"}, {"id": "tidy", "kind": "cpu"}]),
            cpu=cluster_yaml("exotest/route-cpu", [{"id": "tidy", "kind": "cpu"}]),
        )
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)  # create the tables before the worker, the daemon and the CLI race to
            worker_yaml = tmp_path / "celery.yaml"
            worker_yaml.write_text(yaml.safe_dump({"execution": {"config": {"broker": BROKER, "backend": BACKEND}}}))
            path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
            worker_log = tmp_path / "gpu-run-worker.log"
            processes = []
            try:
                processes.append(
                    _start(
                        [
                            str(BIN / "dagster-celery"),
                            "worker",
                            "start",
                            "-A",
                            "dagster_celery.app",
                            "-n",
                            f"gpu-runs-{uuid.uuid4().hex[:6]}",
                            "-q",
                            "gpu-runs",
                            "-y",
                            str(worker_yaml),
                            "--",
                            "--pool=solo",
                            "--without-gossip",
                            "--without-mingle",
                        ],
                        {
                            **os.environ,
                            "PATH": path,
                            "EXO_TEST_WORKER": "gpu-run-worker",
                            "EXO_GPUS": "0",
                        },  # the GPU machine
                        worker_log,
                    )
                )
                # the daemon dequeues submitted runs and hands them to the instance's run launcher (ours)
                processes.append(
                    _start(
                        [str(BIN / "dagster-daemon"), "run", "-f", str(defs), "-a", "defs"],
                        {**os.environ, "PATH": path},
                        tmp_path / "daemon.log",
                    )
                )
                _wait_for(worker_log, " ready.", processes[0], "Celery worker")
                yield instance, defs, db
            finally:
                for proc in processes:
                    _stop(proc)


def _start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_for(log: Path, text: str, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"{what} exited:\n" + log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"{what} not ready:\n" + log.read_text(errors="replace")[-3000:]
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this fixture started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _launch(defs: Path, job: str) -> str:
    run_id = str(uuid.uuid4())
    proc = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-f", str(defs), "-a", "defs", "-j", job, "--run-id", run_id],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"dagster job launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return run_id


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_runs_land_on_the_launcher_their_tags_pick(routed):
    instance, defs, _ = routed
    router = instance.run_launcher
    assert isinstance(router, RoutingRunLauncher)
    assert {name: type(launcher).__name__ for name, launcher in router.launchers.items()} == {
        "default": "DefaultRunLauncher",
        "gpu": "CeleryRunLauncher",
    }

    gpu_id = _launch(defs, "exotest__route_gpu")
    cpu_id = _launch(defs, "exotest__route_cpu")
    gpu_run, cpu_run = _wait_finished(instance, gpu_id), _wait_finished(instance, cpu_id)
    assert gpu_run.status == dg.DagsterRunStatus.SUCCESS, failure_text(instance, gpu_id)
    assert cpu_run.status == dg.DagsterRunStatus.SUCCESS, failure_text(instance, cpu_id)

    # the GPU run went to the Celery run launcher and was executed by the worker on `gpu-runs` ...
    assert gpu_run.tags["exo/compute"] == "gpu" and gpu_run.tags["exo/launcher"] == "gpu"
    assert gpu_run.tags.get("dagster-celery/task_id")  # CeleryRunLauncher's own record of the task it queued
    assert {p["worker_env"] for p in probes(instance, gpu_id).values()} == {"gpu-run-worker"}
    assert [lease["devices"] for lease in leases(instance, gpu_id)] == ["0"]  # with that machine's GPU
    # ... the other one to the default launcher, outside that worker
    assert "exo/compute" not in cpu_run.tags and cpu_run.tags["exo/launcher"] == "default"
    assert "dagster-celery/task_id" not in cpu_run.tags
    assert {p["worker_env"] for p in probes(instance, cpu_id).values()} == {None}

    # health checks and termination are delegated to the run's own launcher
    assert router.supports_check_run_worker_health
    assert router.check_run_worker_health(gpu_run).status == WorkerStatus.SUCCESS  # the Celery task's state
    unknown = router.check_run_worker_health(cpu_run)
    assert unknown.status == WorkerStatus.UNKNOWN and "DefaultRunLauncher" in unknown.msg
    assert router.terminate(gpu_id) is True  # CeleryRunLauncher revokes its task
    assert router.terminate(str(uuid.uuid4())) is False


def test_route_config_errors_are_clear():
    with pytest.raises(ValueError, match="route name 'gpu' is used twice"):
        RoutingRunLauncher(
            routes=[
                {"name": "gpu", "match": {"a": "1"}, "launcher": {"module": "dagster", "class": "DefaultRunLauncher"}}
            ]
            * 2
        )
    with pytest.raises(ValueError, match="route 'all' has an empty `match`"):
        RoutingRunLauncher(
            routes=[{"name": "all", "match": {}, "launcher": {"module": "dagster", "class": "DefaultRunLauncher"}}]
        )
    with pytest.raises(ValueError, match=r"cannot load the run launcher of route 'gpu' \(no_such_module.Launcher\)"):
        RoutingRunLauncher(
            routes=[
                {
                    "name": "gpu",
                    "match": {"exo/compute": "gpu"},
                    "launcher": {"module": "no_such_module", "class": "Launcher"},
                }
            ]
        )


def test_routing_picks_the_first_matching_route():
    router = RoutingRunLauncher(
        routes=[
            {
                "name": "a100",
                "match": {"exo/compute": "gpu", "team": "vision"},
                "launcher": {"module": "dagster", "class": "DefaultRunLauncher"},
            },
            {
                "name": "gpu",
                "match": {"exo/compute": "gpu"},
                "launcher": {"module": "dagster", "class": "DefaultRunLauncher"},
            },
        ]
    )
    assert router.route_for({"exo/compute": "gpu", "team": "vision"}) == "a100"
    assert router.route_for({"exo/compute": "gpu", "team": "search"}) == "gpu"
    assert router.route_for({"exo/cluster": "acme/x"}) == "default"
    assert len({id(x) for x in router.launchers.values()}) == 3  # three separate launcher objects


@pytest.mark.parametrize("folder", ["postgres", "celery", "routing", "k8s"])
def test_shipped_dagster_yaml_files_are_valid(folder, tmp_path, monkeypatch):
    for key, value in {
        "EXO_PG_HOST": "db",
        "EXO_PG_PORT": "5432",
        "EXO_PG_DB": "dagster",
        "EXO_PG_USER": "dagster",
        "EXO_PG_PASSWORD": "x",
        "EXO_CELERY_BROKER": BROKER,
        "EXO_CELERY_BACKEND": BACKEND,
    }.items():
        monkeypatch.setenv(key, value)
    shutil.copyfile(REPO / "deploy" / folder / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own validation of the whole file
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    if folder in ("routing", "k8s"):
        launcher = config["run_launcher"]
        assert (launcher["module"], launcher["class"]) in {
            ("exo_dagster.launchers", "RoutingRunLauncher"),
            ("dagster_k8s", "K8sRunLauncher"),
        }


GPU_CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/gpu-route
  satellites:
    - name: Prepare
      uses: satellite/exospherehost/sql
      identifier: prep
      config: {query: "select 1 as one"}
    - name: On a GPU
      uses: satellite/exospherehost/sql
      identifier: crunch
      resources: {gpu: 1}
      config: {query: "select 2 as two"}
"""


@pytest.mark.slow
def test_an_asset_selection_run_with_a_gpu_step_is_routed_as_gpu(tmp_path):
    """The UI's Materialize launches Dagster's implicit asset job, which carries no cluster run tags:
    the router reads the selected steps' `exo/gpu` op tags from the run's plan instead."""
    from exo_dagster import compile_clusters, parse_cluster

    defs = compile_clusters([parse_cluster(GPU_CLUSTER, str(tmp_path / "gpu.yaml"))])
    asset_job = defs.resolve_implicit_global_asset_job_def()
    route = {
        "name": "gpu",
        "match": {"exo/compute": "gpu"},
        "launcher": {"module": "dagster", "class": "DefaultRunLauncher"},
    }
    with dg.instance_for_test(
        overrides={
            "run_launcher": {
                "module": "exo_dagster.launchers",
                "class": "RoutingRunLauncher",
                "config": {"routes": [route]},
            }
        }
    ) as instance:
        router = instance.run_launcher
        for selected, expected in (("crunch", {"exo/compute": "gpu"}), ("prep", {})):
            job = asset_job.get_subset(asset_selection={dg.AssetKey(["t", "gpu_route", selected])})
            run = instance.create_run_for_job(
                job_def=job, asset_selection=frozenset({dg.AssetKey(["t", "gpu_route", selected])})
            )
            assert "exo/compute" not in run.tags
            assert router.asset_run_tags(run) == expected
            assert router.route_for({**run.tags, **router.asset_run_tags(run)}) == ("gpu" if expected else "default")


def test_the_launcher_keeps_the_name_dagster_yaml_files_use():
    import exo_dagster.launchers

    assert exo_dagster.launchers.RoutingRunLauncher is RoutingRunLauncher
