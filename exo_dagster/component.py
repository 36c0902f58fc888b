"""`exo_dagster.ClusterComponent`: clusters in any `dg` project, through a `defs.yaml`.

```yaml
type: exo_dagster.ClusterComponent
attributes:
  path: clusters            # a cluster file or folder (or a list of them), relative to this defs.yaml
```

or the cluster itself, inline (`attributes: {cluster: {version: 0.0.1b, cluster: {...}}}`).

It builds exactly what the repository's code location builds (`location.checked_build`): every
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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
import yaml
from pydantic import Field

from exo_dagster.compile.merging import SharedParts, merged_definitions
from exo_dagster.execution.instance_home import prepare
from exo_dagster.location import checked_build, error_definitions

# Every ClusterComponent of the process hands Dagster the same IO managers and asset-job executor, which knows
# the clusters of them all (Dagster merges the components' Definitions and allows one of each: merging.py).
_SHARED = SharedParts()


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
    if tree is None or not file or not os.path.isfile(file):
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
                f"{self.__class__.__name__} in {context.path}: "
                "give `path` (cluster files or folders) or `cluster` (inline)"
            )
        base = context.path if context.path.is_dir() else context.path.parent
        paths = [self.path] if isinstance(self.path, str) else list(self.path or [])
        sources = {}
        if self.cluster is not None:
            sources[_inline_file(self.cluster, base)] = _inline_text(self.cluster)
        prepare(from_location=True)  # an empty DAGSTER_HOME gets exo's dagster.yaml (and a WARNING: instance_home.py)
        built = checked_build([base / p for p in paths], sources=sources)
        return merged_definitions(
            built.compiled, more=[error_definitions(built.broken)] if built.broken else [], shared=_SHARED
        )


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
