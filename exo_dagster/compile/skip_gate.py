"""`skip-when-empty: true`: a step whose input has no rows is skipped, and so is what depends on it.

The step becomes a graph-backed asset of two ops. `<op>__gate` counts the input rows and yields its
optional Nothing output only when there are some; the step's own op (node name `<op>`, the step key
`<op>.<op>`) waits on that output. With no rows the gate yields nothing, so Dagster emits STEP_SKIPPED
for the step (the run view shows it skipped), the asset is not materialized, and every step reading
it is skipped in turn, while the run ends SUCCESS. (A single op could only leave its output out: it
would show as a success.) A fanned-out step needs no gate: its `split` op yields no chunk instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg

GATE_OUTPUT = "rows"


def graph_asset(
    *,
    key: dg.AssetKey,
    name: str,
    ins: dict[str, dg.AssetIn],
    skip_message: Callable[[Any, dict], str | None],
    compute: Callable[[Any, dict], Any],
    op_tags: dict[str, str],
    gate_tags: dict[str, str],
    pool: str | None,
    io_manager_key: str,
    retry_policy: dg.RetryPolicy | None,
    asset_kwargs: dict[str, Any],
    required_resource_keys: set[str] = frozenset(),
) -> dg.AssetsDefinition:
    """`skip_message(context, upstream_kwargs)`: why to skip (logged), or None to run `compute(context, upstream_kwargs)`."""
    op_ins = {arg: dg.In() for arg in ins}

    @dg.op(
        name=f"{name}__gate",
        ins=op_ins,
        out={GATE_OUTPUT: dg.Out(dg.Nothing, is_required=False)},
        tags=gate_tags,
        retry_policy=retry_policy,
    )
    def gate(context, **upstream):
        message = skip_message(context, upstream)
        if message:
            context.log.info(message)
            return
        yield dg.Output(None, GATE_OUTPUT)

    # The op's definition needs its own name (the graph has `name`); the node keeps `name` through its alias.
    @dg.op(
        name=f"{name}__step",
        ins={GATE_OUTPUT: dg.In(dg.Nothing), **op_ins},
        out=dg.Out(io_manager_key=io_manager_key),
        tags=op_tags,
        pool=pool,
        retry_policy=retry_policy,
        required_resource_keys=set(required_resource_keys),
    )
    def step(context, **upstream):
        return compute(context, upstream)

    def body(**upstream):
        return step.alias(name)(**{GATE_OUTPUT: gate(**upstream)}, **upstream)

    body.__signature__ = inspect.Signature([inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY) for a in ins])
    return dg.AssetsDefinition.from_graph(
        dg.graph(name=name)(body),
        keys_by_input_name={arg: asset_in.key for arg, asset_in in ins.items()},
        keys_by_output_name={"result": key},
        **asset_kwargs,
    )
