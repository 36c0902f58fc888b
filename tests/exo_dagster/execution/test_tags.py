"""One `resources:` declaration -> every backend's tags, and the executor a cluster picks."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from exo_dagster import compile_cluster, parse_cluster
from exo_dagster.execution.tags import k8s_config, pool_for, run_tags, step_tags
from exo_dagster.spec.errors import SpecError
from exo_dagster.spec.models import Queues, Resources
from tests.exo_dagster.scaleout_defs import REGISTRY
from tests.exo_dagster.scaleout_support import cluster_yaml


def test_gpu_step_tags_for_every_backend():
    tags = step_tags(Resources(gpu=2, gpu_type="a100", cpu=4, memory="16Gi"))
    assert tags["exo/gpu"] == "2"
    assert json.loads(tags["exo/resources"]) == {"gpu": 2, "gpu-type": "a100", "cpu": 4.0, "memory": "16Gi"}
    assert tags["dagster-celery/queue"] == "gpu"
    assert json.loads(tags["dagster-k8s/config"]) == {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": "2"}, "requests": {"cpu": "4", "memory": "16Gi"}}
        },
        "pod_spec_config": {
            "node_selector": {"exo/gpu-type": "a100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "exo/gpu-type", "operator": "Equal", "value": "a100", "effect": "NoSchedule"},
            ],
        },
    }
    assert pool_for(Resources(gpu=1)) == "gpu"


def test_cpu_step_tags_have_requests_but_no_gpu_and_no_pool():
    tags = step_tags(Resources(cpu=0.5, memory="512Mi"), Queues(gpu="cuda", cpu="light"))
    assert tags["exo/gpu"] == "0" and tags["dagster-celery/queue"] == "light"
    config = json.loads(tags["dagster-k8s/config"])
    assert config == {"container_config": {"resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}}
    assert pool_for(Resources(cpu=0.5)) is None


def test_plain_step_has_no_k8s_config_and_gpu_without_type_has_no_node_selector():
    assert "dagster-k8s/config" not in step_tags(Resources())
    assert k8s_config(Resources(gpu=1)) == {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }
    assert run_tags([Resources(), Resources(gpu=1)]) == {"exo/compute": "gpu"}
    assert run_tags([Resources(cpu=2)]) == {}


def test_compiled_cluster_carries_the_tags_pool_and_run_tag():
    text = cluster_yaml(
        "acme/mixed",
        [
            {
                "id": "embed",
                "kind": "gpu",
                "resources": {"gpu": 1, "gpu-type": "l4", "memory": "8Gi"},
            },  # overrides the default
            {"id": "rank", "kind": "gpu"},  # satellite default gpu: 1
            {"id": "clean", "kind": "cpu", "resources": {"cpu": 2}},
        ],
        queues={"gpu": "cuda", "cpu": "general"},
    )
    cluster = parse_cluster(text, "mixed.yaml", registry=REGISTRY)
    defs = compile_cluster(cluster)
    job = defs.resolve_job_def(cluster.job_name)
    assert job.tags["exo/compute"] == "gpu"
    assert job.executor_def.name == "exo_local"  # the embedded default

    def node(step):
        return defs.resolve_assets_def(dg.AssetKey(cluster.asset_key_path(step))).node_def

    embed, rank, clean = node("embed"), node("rank"), node("clean")
    assert embed.tags["dagster-celery/queue"] == "cuda" and clean.tags["dagster-celery/queue"] == "general"
    assert json.loads(embed.tags["exo/resources"]) == {"gpu": 1, "gpu-type": "l4", "memory": "8Gi"}
    assert json.loads(embed.tags["dagster-k8s/config"])["pod_spec_config"]["node_selector"] == {"exo/gpu-type": "l4"}
    assert rank.tags["exo/gpu"] == "1" and clean.tags["exo/gpu"] == "0"
    assert (embed.pool, rank.pool, clean.pool) == ("gpu", "gpu", None)
    spec = defs.resolve_assets_def(dg.AssetKey(cluster.asset_key_path("embed"))).specs_by_key[
        dg.AssetKey(cluster.asset_key_path("embed"))
    ]
    assert "gpu" in spec.kinds


def test_cpu_only_cluster_has_no_compute_run_tag():
    cluster = parse_cluster(cluster_yaml("acme/cpu", [{"id": "a", "kind": "cpu"}]), "cpu.yaml", registry=REGISTRY)
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    assert "exo/compute" not in job.tags
    assert job.executor_def.name == "exo_local"  # dataflow: independent steps run in parallel processes
    sequential = parse_cluster(
        cluster_yaml("acme/chain", [{"id": "a", "kind": "cpu"}]).replace("  execution: dataflow\n", ""),
        "chain.yaml",
        registry=REGISTRY,
    )
    # a sequential chain of CPU steps runs in-process by default: processes would add time, not parallelism
    assert compile_cluster(sequential).resolve_job_def(sequential.job_name).executor_def.name == "in_process"


def test_a_sequential_chain_with_a_gpu_step_keeps_the_gpu_aware_executor():
    text = cluster_yaml("acme/gpuchain", [{"id": "a", "kind": "cpu"}, {"id": "g", "kind": "gpu"}]).replace(
        "  execution: dataflow\n", ""
    )
    cluster = parse_cluster(text, "gpuchain.yaml", registry=REGISTRY)
    assert compile_cluster(cluster).resolve_job_def(cluster.job_name).executor_def.name == "exo_local"


@pytest.mark.parametrize(
    "name, expected", [("celery", "celery"), ("k8s", "k8s"), ("local", "exo_local"), ("in-process", "in_process")]
)
def test_cluster_executor_picks_the_backend(name, expected):
    cluster = parse_cluster(
        cluster_yaml(f"acme/{name}", [{"id": "a", "kind": "gpu"}], executor=name), "c.yaml", registry=REGISTRY
    )
    assert compile_cluster(cluster).resolve_job_def(cluster.job_name).executor_def.name == expected


def test_deployment_default_executor_from_env(monkeypatch):
    cluster = parse_cluster(cluster_yaml("acme/envdefault", [{"id": "a", "kind": "cpu"}]), "c.yaml", registry=REGISTRY)
    monkeypatch.setenv("EXO_EXECUTOR", "celery")
    assert compile_cluster(cluster).resolve_job_def(cluster.job_name).executor_def.name == "celery"
    named = parse_cluster(
        cluster_yaml("acme/named", [{"id": "a", "kind": "cpu"}], executor="local"), "c.yaml", registry=REGISTRY
    )
    assert compile_cluster(named).resolve_job_def(named.job_name).executor_def.name == "exo_local"  # the file wins
    monkeypatch.setenv("EXO_EXECUTOR", "slurm")
    with pytest.raises(
        ValueError, match="EXO_EXECUTOR='slurm' is not an executor; use one of: local, in-process, celery, k8s"
    ):
        compile_cluster(cluster)


def test_unknown_executor_is_a_located_spec_error():
    text = cluster_yaml("acme/bad", [{"id": "a", "kind": "cpu"}], executor="slurm")
    with pytest.raises(SpecError) as info:
        parse_cluster(text, "bad.yaml", registry=REGISTRY)
    rendered = str(info.value)
    assert "bad.yaml:5:" in rendered and "slurm" in rendered and "celery" in rendered
