"""Which Dagster executor a cluster's `executor:` names (chosen when the cluster compiles)."""

from __future__ import annotations

import os

import dagster as dg

EXECUTORS = ("local", "in-process", "celery", "k8s")
EXECUTOR_ENV = "EXO_EXECUTOR"


def resolve_executor_name(name: str | None, *, chain_on_cpu: bool = False) -> str:
    """A cluster's `executor:`, else `EXO_EXECUTOR`, else `in-process` for a chain of CPU steps, else `local`."""
    if name is None:
        name = os.environ.get(EXECUTOR_ENV) or ("in-process" if chain_on_cpu else "local")
        if name not in EXECUTORS:
            raise ValueError(f"{EXECUTOR_ENV}={name!r} is not an executor; use one of: {', '.join(EXECUTORS)}")
    return name


def executor_for(name: str | None, *, chain_on_cpu: bool = False) -> dg.ExecutorDefinition:
    """The Dagster executor a cluster's `executor:` names; unnamed: the deployment's default
    (`EXO_EXECUTOR` when the code location loads), else `in-process` for a chain of CPU steps
    (`chain_on_cpu`: a sequential cluster with no GPU step and no fan-out, where step processes would
    add about 0.6 s a step and no parallelism), else exo's local GPU-aware executor."""
    name = resolve_executor_name(name, chain_on_cpu=chain_on_cpu)
    if name == "local":
        from exo_dagster.execution.gpu_executor import exo_local_executor

        return exo_local_executor
    if name == "in-process":
        return dg.in_process_executor
    if name == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise ImportError("`executor: celery` needs dagster-celery: pip install 'exo-dagster[celery]'") from None
        return celery_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ImportError("`executor: k8s` needs dagster-k8s: pip install 'exo-dagster[k8s]'") from None
        return k8s_job_executor
    raise ValueError(f"unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}")
