"""The executor definition of one cluster's job, which says which cluster it runs and on which executor.

Dagster's one-run CLI commands hand exo only their own objects (a job definition in a frame's locals,
launch_paths.py), so the cluster behind a job is found from the job's executor: an `isinstance` check on
this typed subclass of Dagster's public `ExecutorDefinition`, built by run_executor.guarded.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from exo_dagster.spec.ir import Cluster


class ClusterExecutorDefinition(dg.ExecutorDefinition):
    """A cluster job's executor (`executor_name`: local, in-process, celery, k8s) wrapped by exo's run guard."""

    def __init__(self, *, cluster: Cluster, executor_name: str, **definition: Any):
        super().__init__(**definition)
        self.cluster = cluster
        self.executor_name = executor_name


def cluster_of(job: object) -> Cluster | None:
    """The exo cluster a job runs, or None for any other job (or anything that is not a job)."""
    executor = job.executor_def if isinstance(job, dg.JobDefinition) else None
    return executor.cluster if isinstance(executor, ClusterExecutorDefinition) else None
