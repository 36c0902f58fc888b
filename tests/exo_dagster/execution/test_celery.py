"""`executor: celery`: a mixed cluster over a real Redis broker and two real `dagster-celery` workers,
one per queue. Proof of placement comes from two independent records: Dagster's own "Executing
steps ... in celery worker" engine event (the Celery hostname), and what each step saw itself
(`EXO_TEST_WORKER` of the worker process it ran in)."""

from __future__ import annotations

import os
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

from tests.exo_dagster.scaleout_support import (
    cluster_yaml,
    events_of,
    failure_text,
    make_home,
    probes,
    quiet,
    recon_job,
    short,
    write_clusters,
)
from tests.services import REDIS, redis_url

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

BROKER, BACKEND = f"{REDIS.url}/13", f"{REDIS.url}/14"  # db numbers of these tests only
BIN = Path(sys.executable).parent


def _require_redis() -> None:
    """Skips the test when Redis is absent (fails under EXO_REQUIRE_SERVICES=1), fails when it does not answer."""
    url = urlsplit(redis_url())
    address = (url.hostname or "127.0.0.1", url.port or 6379)
    try:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16).startswith(b"+PONG"), f"Redis at {address} did not answer PING"
    except OSError as exc:
        pytest.fail(f"Redis at {address} did not answer: {exc}")


class Worker:
    """One `dagster-celery worker start` process group, its log, and its queue."""

    def __init__(self, name: str, queue: str, config: Path, env: dict[str, str], log: Path, cwd: Path | None = None):
        self.name, self.queue, self.log = name, queue, log
        self.proc = subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-n",
                name,
                "-q",
                queue,
                "-y",
                str(config),
                "--",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if " ready." in text:
                return
            if self.proc.poll() is not None:
                pytest.fail(f"worker {self.name} exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.5)
        pytest.fail(f"worker {self.name} not ready after {timeout} s:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (CLI, celery, its pool): a host that dies, with no chance to report."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this test started: dagster-celery, celery, its pool
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def celery_setup(tmp_path, monkeypatch):
    _require_redis()
    token = uuid.uuid4().hex[:8]
    queues = {"gpu": f"exo-gpu-{token}", "cpu": f"exo-cpu-{token}"}  # fresh queues: nothing stale can land here
    steps = [
        *({"id": f"gpu{i}", "kind": "gpu", "seconds": 0.2} for i in range(3)),
        *({"id": f"cpu{i}", "kind": "cpu", "seconds": 0.2} for i in range(3)),
    ]
    defs = write_clusters(
        tmp_path, monkeypatch, mixed=cluster_yaml("exotest/celery-mix", steps, executor="celery", queues=queues)
    )
    home = make_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    with dg.DagsterInstance.get() as instance:  # create the sqlite storages once, before two workers race to
        instance.get_runs(limit=1)
        assert instance.event_log_storage is not None and instance.schedule_storage is not None
    config = tmp_path / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": {"broker": BROKER, "backend": BACKEND}}}))
    workers = []
    try:
        for kind in ("gpu", "cpu"):
            env = {
                **os.environ,
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "EXO_TEST_WORKER": f"{kind}-worker",
            }
            workers.append(Worker(f"{kind}w-{token}", queues[kind], config, env, tmp_path / f"{kind}-worker.log"))
        for worker in workers:
            worker.wait_ready()
        yield {"defs": defs, "queues": queues, "workers": {w.queue: w for w in workers}, "token": token}
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.timeout(420)
def test_each_step_runs_on_the_worker_of_its_queue(celery_setup):
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            recon_job("exotest__celery_mix", celery_setup["defs"]),
            instance=instance,
            raise_on_error=False,
            run_config=quiet({"execution": {"config": {"broker": BROKER, "backend": BACKEND}}}),
        )
        assert result.success, failure_text(instance, result.run_id)
        token = celery_setup["token"]
        expected = {f"{kind}{i}": kind for kind in ("gpu", "cpu") for i in range(3)}

        # Dagster's record: which Celery worker executed each step, and which queue it was sent to
        ran_on, queued_to = {}, {}
        for record in events_of(instance, result.run_id, dg.DagsterEventType.ENGINE_EVENT):
            meta = record.dagster_event.event_specific_data.metadata
            if "Celery worker" in meta:
                ran_on[short(record.step_key)] = meta["Celery worker"].value
            if record.user_message.startswith("Submitting celery task"):
                queued_to[short(record.step_key)] = record.user_message.split('to queue "')[1].rstrip('".')
        assert {s: w.split("@")[0] for s, w in ran_on.items()} == {s: f"{k}w-{token}" for s, k in expected.items()}
        assert queued_to == {s: celery_setup["queues"][k] for s, k in expected.items()}

        # the steps' own record: the worker process they computed in
        seen = probes(instance, result.run_id)
        assert {s: p["worker_env"] for s, p in seen.items()} == {s: f"{k}-worker" for s, k in expected.items()}
        assert {s: p["celery_worker"] for s, p in seen.items()} == ran_on
        gpu_pids = {seen[s]["pid"] for s in seen if s.startswith("gpu")}
        cpu_pids = {seen[s]["pid"] for s in seen if s.startswith("cpu")}
        assert gpu_pids.isdisjoint(cpu_pids)  # two different worker processes did the work
