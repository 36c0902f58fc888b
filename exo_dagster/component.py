"""`exo_dagster.ClusterComponent`: clusters in any `dg` project, through a `defs.yaml`.

```yaml
type: exo_dagster.ClusterComponent
attributes:
  path: clusters            # a cluster file or folder (or a list of them), relative to this defs.yaml
```

or the cluster itself, inline (`attributes: {cluster: {version: 0.0.1b, cluster: {...}}}`).

It builds exactly what the repository's code location builds (`location.location_definitions`): every
file isolated (a broken one is an `exo_errors` asset and a WARNING), configured satellites
(`*.satellite.yaml`) found next to the clusters, and all or nothing under EXO_STRICT_LOAD=1 and Dagster's
validation commands (`dg check defs`). An inline cluster is checked as a file of its own that is the
defs.yaml itself with every line outside the `cluster:` value blanked, so its errors say
`defs.yaml:LINE:COL` of the real line, and its relative paths are relative to the defs.yaml's folder.
Its `${{ }}` templates are exo's, not Dagster's: the value is passed through without Jinja rendering.
Dagster parses the defs.yaml, and walks every value its aliases expand to, before this code runs: exo's loader
bounds (alias expansion, depth, size) apply only after Dagster's walk (README, "Two ways to load clusters").

A project may hold several ClusterComponents (folders, inline clusters): Dagster merges their definitions
and lets only one object stand for a resource key or the location's default executor, so they all share
one exo IO manager and one asset-job executor, which knows the clusters of every ClusterComponent loaded
in the process. Names are checked for clashes within one component; a cluster identifier used by two
components fails the whole location (Dagster's duplicate-key error).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
import yaml
from pydantic import Field

from exo_dagster.compile import run_end
from exo_dagster.compile.compiler import IO_MANAGER_KEY, run_tags
from exo_dagster.execution import run_executor
from exo_dagster.execution.instance_home import prepare
from exo_dagster.location import location_definitions
from exo_dagster.spec.ir import Cluster
from exo_dagster.storage.intermediates import ExoIntermediatesIOManager
from exo_dagster.storage.io_manager import ExoParquetIOManager

INLINE = "cluster"  # the attribute that holds an inline cluster


@dataclass(frozen=True)
class InlineCluster:
    """An inline cluster's data and, when it came from a defs.yaml, that file and the cluster's text located in it."""

    data: Any
    file: str | None = None
    text: str | None = None


def _inline_cluster(context: dg.ResolutionContext, value: Any) -> InlineCluster | None:
    if value is None:
        return None
    tree = context.source_position_tree
    file = tree.position.filename if tree is not None else None
    if not file or not os.path.isfile(file):
        return InlineCluster(value)
    key = tree.lookup(list(context.path))  # the `cluster` key's position (Dagster keeps keys, not values)
    text = located_text(Path(file).read_text(encoding="utf-8"), key.start.line if key else None, list(context.path))
    return InlineCluster(value, os.path.abspath(file), text)


def located_text(text: str, key_line: int | None, path: list) -> str | None:
    """`text` (a defs.yaml) with every character outside the value at `path` (in the document whose key at
    the end of `path` sits on 1-based line `key_line`) blanked: the same lines and columns, one YAML
    document holding just that value. None if the value cannot be found."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    for document in documents:
        node, key_node = document, None
        for part in path:
            if not isinstance(node, yaml.MappingNode):
                node = None
                break
            match = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not match:
                node = None
                break
            key_node, node = match[-1]
        if node is None or key_node is None or (key_line is not None and key_node.start_mark.line + 1 != key_line):
            continue
        start, end = node.start_mark, node.end_mark
        lines = text.splitlines(keepends=True)
        out = []
        for number, line in enumerate(lines):
            newline = "\n" if line.endswith(("\n", "\r")) else ""
            body = line.rstrip("\r\n")
            if number < start.line or number > end.line:
                body = ""
            else:
                if number == end.line:
                    body = body[: end.column]
                if number == start.line:
                    body = " " * min(start.column, len(body)) + body[start.column :]
            out.append(body.rstrip() + newline)
        return "".join(out)
    return None


class ClusterComponent(dg.Component, dg.Resolvable, dg.Model):
    """exo clusters (YAML files of satellites) compiled into Dagster assets, jobs, schedules and sensors.

    Give `path` (cluster files or folders, relative to the defs.yaml) or `cluster` (one cluster, inline).
    A broken cluster file becomes an asset in the group `exo_errors` with its located error; `dg check defs`
    fails on it with that error.
    """

    path: str | list[str] | None = Field(
        default=None,
        description="A cluster file or folder (searched recursively), or a list of them; "
        "relative to the folder of this defs.yaml.",
    )
    cluster: Annotated[
        InlineCluster | dict[str, Any] | None,
        dg.Resolver(
            _inline_cluster,
            model_field_type=dict[str, Any] | None,
            inject_before_resolve=False,
            description="One cluster inline: {version: 0.0.1b, cluster: {identifier: ..., satellites: [...]}}. "
            "Its ${{ }} templates are exo's (not rendered by Dagster).",
        ),
    ] = None

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        return dg.ComponentTypeSpec(
            owners=[], tags=["exo", "yaml"], produces=["asset", "job", "schedule", "sensor", "resource"]
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        if self.path is None and self.cluster is None:
            raise dg.DagsterInvalidDefinitionError(
                f"{self.__class__.__name__} in {context.path}: give `path` (cluster files or folders) or `cluster` (inline)"
            )
        base = context.path if context.path.is_dir() else context.path.parent
        paths = [self.path] if isinstance(self.path, str) else list(self.path or [])
        sources = {}
        if self.cluster is not None:
            sources[_inline_file(self.cluster, base)] = _inline_text(self.cluster)
        prepare(from_location=True)  # an empty DAGSTER_HOME gets exo's dagster.yaml (and a WARNING: instance_home.py)
        return _shared(location_definitions([base / p for p in paths], sources=sources))


def _inline_file(cluster: InlineCluster | dict, base: Path) -> str:
    if isinstance(cluster, InlineCluster) and cluster.file and cluster.text is not None:
        return cluster.file
    # a pseudo-file in the component's folder (relative paths still resolve there); it names where the text came from
    return str(base / "defs.yaml#attributes.cluster")


def _inline_text(cluster: InlineCluster | dict) -> str:
    if isinstance(cluster, InlineCluster):
        if cluster.text is not None:
            return cluster.text
        cluster = cluster.data
    return yaml.safe_dump(cluster, sort_keys=False, allow_unicode=True)


# -- what every ClusterComponent of the process shares ----------------------------------------------

_lock = threading.Lock()
_clusters: dict[str, Cluster] = {}  # job name -> cluster, of every ClusterComponent built in this process
_executor_names: dict[str, str] = {}  # job name -> the executor its job runs on
_io_manager = ExoParquetIOManager()
_intermediates = ExoIntermediatesIOManager()
_asset_executor: dg.ExecutorDefinition | None = None


class _AllClusters(Sequence):
    """The clusters of every ClusterComponent built so far, read when a run's executor is created."""

    def _items(self) -> list[Cluster]:
        return list(_clusters.values())

    def __getitem__(self, index):
        return self._items()[index]

    def __len__(self) -> int:
        return len(_clusters)


def _shared(defs: dg.Definitions) -> dg.Definitions:
    """`defs` with the process-wide IO manager and asset-job executor in place of its own."""
    global _asset_executor
    with _lock:
        for job in defs.jobs or []:
            guard = getattr(getattr(job, "executor_def", None), "exo_cluster", None)
            if guard is not None:
                cluster, name = guard
                _clusters[cluster.job_name], _executor_names[cluster.job_name] = cluster, name
        if _asset_executor is None:
            _asset_executor = run_executor.asset_job_executor(
                _AllClusters(),
                _executor_names,
                lambda chosen: run_executor.asset_run_tags(chosen, run_tags),
                run_end.claim,
            )
    resources = {**(defs.resources or {}), IO_MANAGER_KEY: _io_manager, "io_manager": _intermediates}
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources=resources,
        executor=_asset_executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )
