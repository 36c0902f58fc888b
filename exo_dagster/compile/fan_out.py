"""`fan-out: {chunk-rows: N}`: one step's rows split into chunks that run as separate ops.

The step becomes a graph-backed asset: `split` yields one dynamic output per chunk, `chunk`
runs the satellite over its slice of rows (so chunks can land on different processes or
workers), and `merge` hands the chunk files on as one table. Each chunk's Parquet is written
atomically where the outputs go (`chunk_folder`) and the merged output references them, with no copy.
Each run's chunk folder carries a marker, so a later merge's clean-up (storage/chunk_folders.py) deletes
only folders the fan-out made.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import dagster as dg
from upath import UPath

from exo_dagster import keys
from exo_dagster.compile.step_plan import RESULT, StepPlan
from exo_dagster.sdk import paths
from exo_dagster.sdk.internal import leak_guard
from exo_dagster.sdk.table import StoredTable
from exo_dagster.storage import chunk_folders
from exo_dagster.storage.io_manager import to_frame, write_parquet_atomic


def chunk_folder(manager: Any, key: dg.AssetKey, run_id: str) -> tuple[UPath, dict | None]:
    """Local outputs: `<data folder>/chunks/...` as before. Remote outputs (`s3://...`): under the IO
    manager's base path, so workers on other hosts (no shared disk) write and merge the same files."""
    base = getattr(manager, "_base_path", None)
    remote = base is not None and paths.is_url(str(base))
    options = (dict(getattr(base, "storage_options", {}) or {}) or None) if remote else None
    return chunk_folders.run_folder(base, key.path, run_id), options


def chunk_bounds(rows: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(size, rows - start)) for start in range(0, rows, size)] or [(0, 0)]


def graph_asset(plan: StepPlan, chunk_rows: int, count_rows: Callable[[Any, dict], int]) -> dg.AssetsDefinition:
    """The step of `plan` over chunks of `chunk_rows` rows: `count_rows(context, upstream tables by identifier)`
    is how many rows there are; `plan.compute(context, upstream, (offset, length))` runs the satellite on one
    chunk. With `plan.skip_message` (`skip-when-empty`) giving a reason, `split` logs it and yields no chunk, so
    Dagster skips the merge (the asset is not materialized) and everything downstream."""
    key, name, io_manager_key, skip_message = plan.key, plan.op_name, plan.io_manager_key, plan.skip_message
    op_ins = {arg: dg.In() for arg in plan.ins}
    op_tags = dict(plan.op_tags)

    @dg.op(name=f"{name}__split", ins=op_ins, out=dg.DynamicOut(is_required=skip_message is None), tags=op_tags)
    def split(context, **upstream):
        if skip_message is not None and (message := skip_message(context, plan.upstream(upstream))):
            context.log.info(message)
            return
        total = count_rows(context, plan.upstream(upstream))
        context.log.info(f"{total} rows in chunks of {chunk_rows}")
        for index, (offset, length) in enumerate(chunk_bounds(total, chunk_rows)):
            yield dg.DynamicOutput({"index": index, "offset": offset, "length": length}, mapping_key=f"c{index}")

    @dg.op(
        name=f"{name}__chunk",
        ins={"chunk": dg.In(), **op_ins},
        tags=op_tags,
        retry_policy=plan.retry_policy,
        required_resource_keys={*plan.required_resource_keys, io_manager_key},
    )
    def run_chunk(context, chunk: dict, **upstream):
        value = plan.compute(context, plan.upstream(upstream), (chunk["offset"], chunk["length"]))
        value = value.value if isinstance(value, dg.Output) else value
        folder, _ = chunk_folder(getattr(context.resources, io_manager_key), key, context.run.run_id)
        if not paths.is_url(str(folder)):  # a local folder: its text is a plain path
            os.makedirs(str(folder), exist_ok=True)
        chunk_folders.mark(folder, key.path, context.run.run_id)  # clean-up deletes only marked folders
        target = folder / chunk_folders.chunk_file_name(chunk["index"])
        with leak_guard.masked(leak_guard.run_values(context.run.run_id)):  # a lazy chunk computes here: masked
            write_parquet_atomic(to_frame(value), target)  # an object store's PUT is atomic: no half-written chunk
        return str(target)

    @dg.op(
        name=f"{name}__merge",
        out=dg.Out(io_manager_key=io_manager_key),
        tags=op_tags,
        required_resource_keys={io_manager_key},
    )
    def merge(context, parts: list[str]) -> StoredTable:
        ordered = tuple(sorted(parts))
        context.add_output_metadata({keys.CHUNKS: len(ordered)})
        _, options = chunk_folder(getattr(context.resources, io_manager_key), key, context.run.run_id)
        return StoredTable(ordered[0] if len(ordered) == 1 else ordered, options)

    def body(**upstream):
        chunks = split(**upstream)
        return merge(chunks.map(lambda c: run_chunk(c, **upstream)).collect())

    body.__signature__ = inspect.Signature([inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY) for a in plan.ins])
    graph = dg.graph(name=name)(body)
    return dg.AssetsDefinition.from_graph(
        graph,
        keys_by_input_name=plan.input_keys,
        keys_by_output_name={RESULT: key},
        **plan.graph_asset_kwargs(),
    )
