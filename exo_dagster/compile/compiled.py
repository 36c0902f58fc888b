"""What compiling one cluster gives, as a value: its Definitions and what the rest of exo needs to know of it.

The code location (location.py), the Dagster component (component.py) and the executor of Dagster's asset
job (merging.py) read the cluster, its executor and its run tags from here, never back off Dagster's objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from exo_dagster.spec.ir import Cluster


@dataclass(frozen=True)
class CompiledCluster:
    """One cluster compiled (compiler.compiled_cluster). `definitions` hold its assets, its job, its triggers, its
    sections and its own resources (`inputs:`), but no IO manager: merging.merged_definitions adds the shared ones."""

    cluster: Cluster
    executor_name: str  # what the cluster's job runs on: local, in-process, celery or k8s (executor_choice.py)
    run_tags: Mapping[str, str]  # the cluster job's run tags; asset-selection runs of its steps get them too
    definitions: dg.Definitions

    @property
    def job_name(self) -> str:
        return self.cluster.job_name
