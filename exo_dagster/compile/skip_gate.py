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

import dagster as dg

from exo_dagster.compile.step_plan import RESULT, StepPlan

GATE_OUTPUT = "rows"


def graph_asset(plan: StepPlan, gate_tags: dict[str, str]) -> dg.AssetsDefinition:
    """The step of `plan` behind a gate op (tagged `gate_tags`): `plan.skip_message(context, upstream)` says why
    to skip (logged), or None to run `plan.compute(context, upstream)`."""
    name, skip_message = plan.op_name, plan.skip_message
    assert skip_message is not None, "a gated step is a skip-when-empty step"
    op_ins = {arg: dg.In() for arg in plan.ins}

    @dg.op(
        name=f"{name}__gate",
        ins=op_ins,
        out={GATE_OUTPUT: dg.Out(dg.Nothing, is_required=False)},
        tags=gate_tags,
        retry_policy=plan.retry_policy,
    )
    def gate(context, **upstream):
        message = skip_message(context, plan.upstream(upstream))
        if message:
            context.log.info(message)
            return
        yield dg.Output(None, GATE_OUTPUT)

    # The op's definition needs its own name (the graph has `name`); the node keeps `name` through its alias.
    @dg.op(
        name=f"{name}__step",
        ins={GATE_OUTPUT: dg.In(dg.Nothing), **op_ins},
        out=dg.Out(io_manager_key=plan.io_manager_key),
        tags=dict(plan.op_tags),
        pool=plan.pool,
        retry_policy=plan.retry_policy,
        required_resource_keys=set(plan.required_resource_keys),
    )
    def step(context, **upstream):
        return plan.compute(context, plan.upstream(upstream))

    def body(**upstream):
        return step.alias(name)(**{GATE_OUTPUT: gate(**upstream)}, **upstream)

    body.__signature__ = inspect.Signature([inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY) for a in plan.ins])
    return dg.AssetsDefinition.from_graph(
        dg.graph(name=name)(body),
        keys_by_input_name=plan.input_keys,
        keys_by_output_name={RESULT: plan.key},
        **plan.graph_asset_kwargs(),
    )
