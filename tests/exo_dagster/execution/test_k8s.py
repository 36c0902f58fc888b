"""`executor: k8s`: the compiled tags go through dagster-k8s's own `k8s_job_executor` unchanged.

No Kubernetes cluster runs here, so the test runs a small Kubernetes API of its own on 127.0.0.1:
it stores every Job that dagster-k8s POSTs (the exact JSON a cluster would get) and, like a
kubelet, runs the pod's container command (`dagster api execute_step`, with the pod's env) as a
local process, so the run really completes. The assertions are on the Job specs dagster-k8s built:
GPU limits, node selectors and tolerations land on the GPU steps' pods only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from tests.exo_dagster.scaleout_support import (
    REPO,
    cluster_yaml,
    failure_text,
    make_home,
    probes,
    quiet,
    recon_job,
    write_clusters,
)

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

BIN = Path(sys.executable).parent
NAMESPACE = "exo-test"
JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/?]+)(/status)?)?")


class FakeKubernetes:
    """Just enough of the Kubernetes API for dagster-k8s's step handler, plus a kubelet that runs pods locally."""

    def __init__(self, log_dir: Path):
        self.jobs: dict[str, dict] = {}
        self.pods: dict[str, subprocess.Popen] = {}
        self.log_dir = log_dir
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                match = JOBS.match(self.path)
                if not match or match.group(2):
                    return self._reply(404, {"kind": "Status", "code": 404})
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                job.setdefault("metadata", {})["namespace"] = match.group(1)
                fake.create(job)
                self._reply(201, job)

            def do_GET(self):
                match = JOBS.match(self.path)
                if match and match.group(2) in fake.jobs:
                    return self._reply(200, {**fake.jobs[match.group(2)], "status": fake.status(match.group(2))})
                if self.path.startswith("/api/v1/namespaces/") and "/pods" in self.path:
                    return self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
                self._reply(404, {"kind": "Status", "code": 404})

            def do_DELETE(self):
                self._reply(200, {"kind": "Status", "status": "Success"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def create(self, job: dict) -> None:
        """Store the Job and run its pod's container like a kubelet would (image = this virtualenv)."""
        name = job["metadata"]["name"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if argv and argv[0] == "dagster":
            argv[0] = str(BIN / "dagster")
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}}
        with self.lock:
            self.jobs[name] = job
            log = (self.log_dir / f"{name}.log").open("w")
            self.pods[name] = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def status(self, name: str) -> dict:
        code = self.pods[name].poll()
        return {"active": 1} if code is None else ({"succeeded": 1} if code == 0 else {"failed": 1})

    def stop(self) -> None:
        self.server.shutdown()
        for pod in self.pods.values():
            if pod.poll() is None:
                pod.kill()
                pod.wait(timeout=10)


@pytest.fixture
def kubernetes(tmp_path):
    fake = FakeKubernetes(tmp_path)
    try:
        yield fake
    finally:
        fake.stop()


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
            }
        )
    )
    return path


STEPS = [
    {"id": "embed", "kind": "gpu", "resources": {"gpu": 1, "gpu-type": "a100", "memory": "16Gi"}},
    {"id": "train", "kind": "gpu", "resources": {"gpu": 2}},
    {"id": "clean", "kind": "cpu", "resources": {"cpu": 0.5, "memory": "512Mi"}},
    {"id": "plain", "kind": "cpu"},
]


@pytest.mark.timeout(420)
def test_gpu_limits_node_selectors_and_tolerations_land_on_gpu_pods_only(kubernetes, tmp_path, monkeypatch):
    defs = write_clusters(tmp_path, monkeypatch, k8s=cluster_yaml("exotest/k8s-mix", STEPS, executor="k8s"))
    config = kubeconfig(tmp_path / "kubeconfig.json", kubernetes.url)
    # The instance a k8s deployment has: K8sRunLauncher (its settings feed the step pods too).
    home = make_home(
        tmp_path / "home",
        (
            "run_launcher:\n  module: dagster_k8s\n  class: K8sRunLauncher\n  config:\n"
            "    service_account_name: dagster\n    instance_config_map: dagster-instance\n"
            "    dagster_home: /opt/dagster/dagster_home\n    job_image: exo-dagster:test\n"
            f"    job_namespace: {NAMESPACE}\n    load_incluster_config: false\n    kubeconfig_file: {config}\n"
        ),
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))

    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            recon_job("exotest__k8s_mix", defs),
            instance=instance,
            raise_on_error=False,
            run_config=quiet(
                {
                    "execution": {
                        "config": {
                            "job_namespace": NAMESPACE,
                            "load_incluster_config": False,
                            "kubeconfig_file": str(config),
                        }
                    }
                }
            ),
        )
        logs = {p.name: p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("dagster-step-*.log")}
        assert result.success, failure_text(instance, result.run_id) + json.dumps(logs, indent=1)
        assert set(probes(instance, result.run_id)) == {s["id"] for s in STEPS}  # every step ran, in its "pod"
        assert instance.get_run_by_id(result.run_id).tags["exo/compute"] == "gpu"

    pods = {
        job["metadata"]["labels"]["dagster/op"].split("__", 1)[0]: job["spec"]["template"]["spec"]
        for job in kubernetes.jobs.values()
    }
    assert set(pods) == {"embed", "train", "clean", "plain"}
    for job in kubernetes.jobs.values():
        assert job["metadata"]["namespace"] == NAMESPACE
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "exo-dagster:test"

    def resources(step):
        return pods[step]["containers"][0].get("resources") or {}

    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert resources("embed") == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"memory": "16Gi"}}
    assert pods["embed"]["nodeSelector"] == {"exo/gpu-type": "a100"}
    assert gpu_toleration in pods["embed"]["tolerations"]
    assert {"key": "exo/gpu-type", "operator": "Equal", "value": "a100", "effect": "NoSchedule"} in pods["embed"][
        "tolerations"
    ]

    assert resources("train") == {"limits": {"nvidia.com/gpu": "2"}}
    assert pods["train"]["tolerations"] == [gpu_toleration] and not pods["train"].get("nodeSelector")

    assert resources("clean") == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    for cpu_step in ("clean", "plain"):
        assert "nvidia.com/gpu" not in json.dumps(pods[cpu_step])
        assert not pods[cpu_step].get("nodeSelector") and not pods[cpu_step].get("tolerations")
    assert not resources("plain").get("limits") and not resources("plain").get("requests")
