"""Compiled clusters merged into one Definitions: theirs, plus the exo IO managers and the asset job's executor.

Dagster lets a code location hold one object per resource key and one default executor, the one its implicit
asset job (the UI's Materialize, asset backfills) runs with. So the clusters of a location share them: the IO
managers that store every step's output, and an executor that runs the selected steps as their cluster's job
would (run_executor.asset_job_executor). Both the code location (location.py) and the Dagster component
(component.py) build their Definitions with `merged_definitions`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from exo_dagster import keys
from exo_dagster.compile.compiled import CompiledCluster
from exo_dagster.execution import run_executor
from exo_dagster.sections import run_end
from exo_dagster.spec.ir import Cluster
from exo_dagster.storage.intermediates import ExoIntermediatesIOManager
from exo_dagster.storage.io_manager import ExoParquetIOManager


class SharedParts:
    """The objects a code location holds once, and the clusters the asset job's executor knows.

    A location (location.py) makes one per build. A `dg` project may hold several ClusterComponents, whose
    Definitions Dagster merges itself and accepts only if they hand over the very same IO manager and executor
    objects; so component.py keeps one SharedParts for the whole process, and each component adds its clusters
    to it. The executor reads the clusters when a run starts, so it knows those of every component by then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[str, CompiledCluster] = {}  # job name -> the compiled cluster
        self.io_manager = ExoParquetIOManager()
        self.intermediates = ExoIntermediatesIOManager()
        self.asset_job_executor = run_executor.asset_job_executor(
            self._clusters, self._executor_of, self._run_tags_of, run_end.claim
        )

    def add(self, compiled: Iterable[CompiledCluster]) -> None:
        with self._lock:
            self._compiled.update((c.job_name, c) for c in compiled)

    def resources(self) -> dict[str, Any]:
        return {keys.IO_MANAGER_KEY: self.io_manager, keys.DEFAULT_IO_MANAGER_KEY: self.intermediates}

    def _clusters(self) -> list[Cluster]:
        with self._lock:
            return [c.cluster for c in self._compiled.values()]

    def _executor_of(self, cluster: Cluster) -> str:
        compiled = self._compiled.get(cluster.job_name)
        return compiled.executor_name if compiled is not None else "local"

    def _run_tags_of(self, cluster: Cluster) -> Mapping[str, str]:
        return self._compiled[cluster.job_name].run_tags


def merged_definitions(
    compiled: Sequence[CompiledCluster],
    *,
    more: Sequence[dg.Definitions] = (),
    resources: Mapping[str, Any] | None = None,
    shared: SharedParts | None = None,
) -> dg.Definitions:
    """The clusters' Definitions and `more` (a location's error assets) merged, with the IO managers and the
    asset job's executor of `shared` (a new SharedParts when None); `resources` are added over the IO managers."""
    shared = shared or SharedParts()
    shared.add(compiled)
    parts = [c.definitions for c in compiled] + list(more)
    merged = dg.Definitions.merge(*parts) if parts else dg.Definitions()
    return dg.Definitions.merge(
        merged,
        dg.Definitions(resources={**shared.resources(), **(resources or {})}, executor=shared.asset_job_executor),
    )
