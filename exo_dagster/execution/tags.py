"""One `resources:` declaration -> the tags every backend reads, so the same YAML runs everywhere.

| reader | tag |
|---|---|
| exo's local executor | `exo/gpu` (device count), `exo/resources` (the whole declaration, JSON) |
| Dagster global concurrency | pool `gpu` on GPU assets (`pool_for`) |
| dagster-celery | `dagster-celery/queue`: the GPU or CPU queue |
| dagster-k8s | `dagster-k8s/config`: `nvidia.com/gpu` limits, cpu/memory requests, node selector and tolerations |
| run launchers (run tags only) | `exo/compute: gpu` on a job with any GPU step (`run_tags`) |
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from exo_dagster.keys import COMPUTE_TAG, GPU_TAG, GPU_TYPE_LABEL, RESOURCES_TAG
from exo_dagster.spec.models import Queues, Resources

GPU_POOL = "gpu"
CELERY_QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"
K8S_GPU_RESOURCE = "nvidia.com/gpu"
# GPU node pools are usually tainted so that only GPU pods land there (GKE/EKS/AKS convention).
K8S_GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def step_tags(resources: Resources, queues: Queues | None = None) -> dict[str, str]:
    """Op tags for one step: exo's own, Celery's queue, and (when anything is declared) Kubernetes'."""
    queues = queues or Queues()
    tags = {
        GPU_TAG: str(resources.gpu),
        RESOURCES_TAG: json.dumps(resources.model_dump(exclude_none=True, by_alias=True), sort_keys=True),
        CELERY_QUEUE_TAG: queues.gpu if resources.gpu else queues.cpu,
    }
    k8s = k8s_config(resources)
    if k8s:
        tags[K8S_CONFIG_TAG] = json.dumps(k8s, sort_keys=True)
    return tags


def k8s_config(resources: Resources) -> dict[str, Any]:
    """dagster-k8s's per-step config: GPUs as limits (an extended resource), cpu/memory as requests."""
    container: dict[str, Any] = {}
    requests: dict[str, str] = {}
    if resources.cpu is not None:
        requests["cpu"] = _quantity(resources.cpu)
    if resources.memory is not None:
        requests["memory"] = resources.memory
    if requests:
        container.setdefault("resources", {})["requests"] = requests
    config: dict[str, Any] = {}
    if resources.gpu:
        container.setdefault("resources", {})["limits"] = {K8S_GPU_RESOURCE: str(resources.gpu)}
        pod: dict[str, Any] = {"tolerations": [dict(K8S_GPU_TOLERATION)]}
        if resources.gpu_type:
            pod["node_selector"] = {GPU_TYPE_LABEL: resources.gpu_type}
            pod["tolerations"].append(
                {"key": GPU_TYPE_LABEL, "operator": "Equal", "value": resources.gpu_type, "effect": "NoSchedule"}
            )
        config["pod_spec_config"] = pod
    if container:
        config["container_config"] = container
    return config


def pool_for(resources: Resources) -> str | None:
    """GPU steps share one Dagster pool, so `dagster instance concurrency set gpu N` caps them globally."""
    return GPU_POOL if resources.gpu else None


def run_tags(all_resources: Iterable[Resources]) -> dict[str, str]:
    """Run tags a launcher can route on (launchers never see op tags)."""
    return {COMPUTE_TAG: "gpu"} if any(r.gpu for r in all_resources) else {}


def _quantity(cpu: float) -> str:
    """Kubernetes CPU quantity: whole cores as `2`, fractions in millicores (`0.5` -> `500m`)."""
    return str(int(cpu)) if float(cpu).is_integer() else f"{round(cpu * 1000)}m"
