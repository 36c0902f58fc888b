"""One step's asset, decided once: what the three shapes of step asset are built from.

A step is a single-op asset (compiler.py), a fan-out graph (`fan-out:`, fan_out.py) or a gated graph
(`skip-when-empty:`, skip_gate.py). The compiler works out the key, the ins, the tags, the metadata and the
compute once, into a StepPlan; each builder only arranges ops around it, so all three show the same asset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from exo_dagster import keys

RESULT = "result"  # the single output of every step asset


@dataclass(frozen=True)
class StepPlan:
    key: dg.AssetKey
    op_name: str  # the op (or graph) name: identifier first (spec/ir.py)
    group: str
    input_keys: Mapping[str, dg.AssetKey]  # op argument (`in_<asset name>`) -> the upstream step's asset key
    arg_to_id: Mapping[str, str]  # op argument -> the upstream step's identifier
    description: str
    metadata: Mapping[str, Any]
    tags: Mapping[str, str]  # the asset's tags: the cluster's `tags:` with the step's over them
    op_tags: Mapping[str, str]  # exo's and the executors' (execution/tags.py)
    kinds: tuple[str, ...]
    owners: tuple[str, ...]
    code_version: str
    partitions_def: dg.PartitionsDefinition | None
    retry_policy: dg.RetryPolicy | None
    pool: str | None
    required_resource_keys: frozenset[str]
    compute: Callable[..., Any]  # (context, upstream tables by identifier[, (offset, length) of a chunk]) -> output
    # `skip-when-empty`: (context, upstream tables by identifier) -> why the step is skipped, or None to run it
    skip_message: Callable[[Any, dict[str, Any]], str | None] | None = None
    io_manager_key: str = keys.IO_MANAGER_KEY

    @property
    def ins(self) -> dict[str, dg.AssetIn]:
        """The op's asset inputs, one per upstream step."""
        return {arg: dg.AssetIn(key=key) for arg, key in self.input_keys.items()}

    def upstream(self, by_arg: Mapping[str, Any]) -> dict[str, Any]:
        """An op's upstream arguments keyed by the step identifiers they hold."""
        return {self.arg_to_id[arg]: value for arg, value in by_arg.items()}

    def graph_asset_kwargs(self) -> dict[str, Any]:
        """`AssetsDefinition.from_graph` arguments that show a graph-backed asset as the single-op one shows."""
        return {
            "group_name": self.group,
            "descriptions_by_output_name": {RESULT: self.description},
            "metadata_by_output_name": {RESULT: dict(self.metadata)},
            "tags_by_output_name": {RESULT: {**self.tags, **{f"{keys.KIND_TAG_PREFIX}{k}": "" for k in self.kinds}}},
            "owners_by_output_name": {RESULT: list(self.owners)},
            "code_versions_by_output_name": {RESULT: self.code_version},
            "partitions_def": self.partitions_def,
        }
