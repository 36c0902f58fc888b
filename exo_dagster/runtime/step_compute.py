"""What runs inside a compiled step: resolve templates, validate config, call the satellite."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl
from dagster import Failure, Output
from pydantic import ValidationError

from exo_dagster import keys
from exo_dagster.errors import UserError
from exo_dagster.runtime import run_inputs, step_failure, step_timeout
from exo_dagster.runtime import secrets as secret_values
from exo_dagster.sdk import row_cache, step_errors, templates
from exo_dagster.sdk.context import StepContext
from exo_dagster.sdk.durations import duration_seconds
from exo_dagster.sdk.internal import leak_guard
from exo_dagster.sdk.row_map import RowFailed
from exo_dagster.sdk.table import StoredTable
from exo_dagster.spec import preset_rules
from exo_dagster.spec.ir import Cluster, ParsedStep
from exo_dagster.storage.metadata import column_schema


class StepInputError(UserError, RuntimeError):
    """A step's templates or config could not be resolved at run time (missing env var, column...)."""


def cluster_fields(cluster: Cluster) -> dict[str, Any]:
    spec = cluster.spec
    dumped = [t.model_dump(exclude_none=True, exclude_defaults=True, by_alias=True) for t in spec.triggers]
    trigger = (dumped if isinstance(spec.trigger, list) else dumped[0]) if dumped else None
    return {
        "identifier": spec.identifier,
        "title": spec.title,
        "description": spec.description,
        "trigger": trigger,
        "sla": spec.sla,
        "project": spec.project,
        "name": spec.short_name,
    }


def make_resolver(
    cluster: Cluster,
    step: ParsedStep,
    tables: dict[str, StoredTable],
    environ=os.environ,
    roots: dict[str, dict[str, Any]] | None = None,
    inputs: dict[str, Any] | None = None,
) -> Callable[[templates.Reference], Any]:
    """`roots` adds template roots known only at run time (`failure.*` in a cluster's failure satellites);
    `inputs` are the run's input values (runtime/run_inputs.py)."""
    fields = cluster_fields(cluster)

    def resolve(ref: templates.Reference) -> Any:
        if (satellite := ref.satellite) is not None:  # a `satellites.` reference
            table = tables[satellite]
            return table.column(ref.column) if ref.column else table
        if ref.root == "secrets":
            source = cluster.secrets[ref.parts[0]]
            return secret_values.secret_value(ref.parts[0], source, environ)
        if ref.root == "env":
            if ref.parts[0] not in environ:
                raise StepInputError(
                    f"step `{step.identifier}` reads environment variable `{ref.parts[0]}`, which is not set"
                )
            return environ[ref.parts[0]]
        if ref.root == "cluster":
            return fields[ref.parts[0]]
        if ref.root == "inputs" and inputs is not None and ref.parts[0] in inputs:
            return inputs[ref.parts[0]]
        if roots and ref.root in roots and ref.parts[0] in roots[ref.root]:
            return roots[ref.root][ref.parts[0]]
        raise StepInputError(f"`{ref.text}` cannot be resolved in step `{step.identifier}`")

    return resolve


def per_row_frame(step: ParsedStep, tables: dict[str, StoredTable], resolve) -> pl.LazyFrame | None:
    """The step's per-row input as one lazy table: a row per source row, a column per `$${{ }}` input key."""
    if step.per_row_source is None:
        return None
    source = tables[step.per_row_source].lazy()
    names = source.collect_schema().names()
    exprs = []
    for key, raw in step.spec.input.items():
        if is_per_row(raw):
            try:
                exprs.append(_row_expr(raw, resolve, names, _embedded_language(step, key)).alias(str(key)))
            except Exception as exc:
                step_errors.at_key(exc, f"input.{key}")
                raise
    return source.select(exprs)


def is_per_row(raw: Any) -> bool:
    return isinstance(raw, str) and "$${{" in raw


def _embedded_language(step: ParsedStep, key: Any):
    """The language a config/input field is written in (SQL, HTML), if the satellite declares one."""
    language = step.satellite.embeds.get(str(key))
    return language if language is not None and language.applies(step.config) else None


def _row_expr(raw: Any, resolve, names: list[str], language=None) -> pl.Expr:
    if not isinstance(raw, str) or not templates.has_template(raw):
        return pl.lit(raw)
    template = templates.parse(raw)
    pieces: list[pl.Expr] = []
    for piece in template.pieces:
        if isinstance(piece, str):
            pieces.append(pl.lit(piece))
        elif piece.per_row:
            if piece.column not in names:
                missing = StepInputError(
                    f"`{piece.text}`: column `{piece.column}` is not in `{piece.satellite}`'s "
                    f"output (it has: {', '.join(names)})"
                )
                raise step_errors.at_template(missing, piece.text)
            column = pl.col(piece.column)
            pieces.append(language.column(column) if language is not None and language.column else column)
        elif language is not None:
            pieces.append(pl.lit(language.render(piece.text, resolve)))
        else:
            value = resolve(piece)
            pieces.append(pl.lit(value if template.whole else templates.as_text(value)))
    if template.whole is not None and language is None:
        return pieces[0]
    return pl.concat_str([p.cast(pl.Utf8).fill_null("") for p in pieces])


def render_section(step: ParsedStep, section: dict[str, Any], resolve, name: str = "config") -> dict[str, Any]:
    """Render a config/input mapping; fields in another language (SQL, HTML) get that language's literals.
    An error names the key it came from (`config_key`: `config.path`), so the failure points there."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        language = _embedded_language(step, key)
        try:
            if language is not None and isinstance(value, str):
                out[key] = language.render(value, resolve)
            else:
                out[key] = templates.render(value, resolve)
        except Exception as exc:
            step_errors.at_key(exc, f"{name}.{key}")
            raise
    return out


def count_rows(step: ParsedStep, tables: dict[str, StoredTable]) -> int:
    """How many rows the step fans out over (its per-row source's row count)."""
    if step.per_row_source is None:
        return 0
    return int(tables[step.per_row_source].lazy().select(pl.len()).collect().item())


SECRET_PLACEHOLDER = "exo-secret-placeholder"


def _memo(resolve: Callable[[templates.Reference], Any]) -> Callable[[templates.Reference], Any]:
    """Resolve each reference once per step (config is rendered twice, and a column may be read from storage)."""
    seen: dict[tuple, Any] = {}

    def cached(ref: templates.Reference) -> Any:
        key = (ref.root, ref.parts)
        if key not in seen:
            try:
                seen[key] = resolve(ref)
            except Exception as exc:
                step_errors.at_template(exc, ref.text)  # which template failed: the failure points at it
                raise
        return seen[key]

    return cached


def validate_config(step: ParsedStep, resolve, cluster_dir: str, hidden: list[str]) -> Any:
    """Validate the step's config with placeholders where secrets go, then with the real values.

    Pydantic quotes (a shortened) input in its messages, so a secret must never be what it validates
    while a message could still be shown: errors of the placeholder pass are reported as they are; an
    error of the real pass names the field and the kind of problem only, never the value.
    """
    model = step.satellite.config_model
    context = {"cluster_dir": cluster_dir}

    def placeholder(ref: templates.Reference) -> Any:
        return SECRET_PLACEHOLDER if ref.root == "secrets" else resolve(ref)

    secret_fields = {
        path
        for path, text in templates.walk_strings(step.config)
        if templates.has_template(text) and "secrets." in text
    }
    try:
        checked = model.model_validate(render_section(step, step.config, placeholder), context=context)
    except ValidationError as exc:
        problems = [
            e for e in exc.errors(include_url=False) if not any(tuple(e["loc"])[: len(p)] == p for p in secret_fields)
        ]
        if problems:
            raise _at_first(step, StepInputError(_invalid(step, problems, hidden)), problems) from None
    else:
        if not secret_fields:  # no secret in the config: the real pass would validate exactly the same values
            return checked
    try:
        return model.model_validate(render_section(step, step.config, resolve), context=context)
    except ValidationError as exc:
        problems = [
            {**e, "msg": f"the value (from a secret, not shown) is invalid: {e['type']}"}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise _at_first(step, StepInputError(_invalid(step, problems, hidden)), problems) from None


def _at_first(step: ParsedStep, exc: StepInputError, problems: Sequence[Mapping[str, Any]]) -> StepInputError:
    """The invalid config points at its first bad field, and at the template that gave it its value."""
    loc = tuple(problems[0]["loc"]) if problems else ()
    if not loc:
        return exc
    written: Any = step.config
    for part in loc:
        written = written.get(part) if isinstance(written, dict) else None
    if isinstance(written, str) and templates.has_template(written):
        with contextlib.suppress(templates.TemplateSyntaxError, IndexError):
            step_errors.at_template(exc, templates.parse(written).references[0].text)
    return step_errors.at_key(exc, "config." + ".".join(map(str, loc)))


def _invalid(step: ParsedStep, errors: Sequence[Mapping[str, Any]], hidden: list[str]) -> str:
    lines = [
        f"  {'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg'].removeprefix('Value error, ')}" for e in errors
    ]
    text = f"config of step `{step.identifier}` is invalid after resolving templates:\n" + "\n".join(lines)
    return secret_values.mask(text, hidden)


def row_identity(config: dict[str, Any], roots: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The config part of the per-row cache key: in a partitioned run the partition is in it, so a row
    finished for one partition is never taken as done for another (unpartitioned keys are unchanged)."""
    partition = (roots or {}).get("partition", {}).get("key")
    return config if partition is None else {**config, keys.PARTITION: partition}


def make_compute(
    cluster: Cluster,
    step: ParsedStep,
    previous: str | None,
    roots: Callable[[Any], dict[str, dict[str, Any]]] | None = None,
):
    """The function a compiled asset calls with its upstream StoredTables.

    `roots(context)` gives extra template roots at run time (the failure job's `failure.*`).
    Every secret the step can see is masked in its log lines, errors, metadata and output table.
    """

    timeout_s = duration_seconds(step.spec.timeout) if step.spec.timeout is not None else None
    sources = secret_values.visible_sources(cluster, step)  # which secrets the step sees: fixed by the spec

    def compute(context, tables: dict[str, StoredTable], chunk: tuple[int, int] | None = None) -> Any:
        """`chunk` = (offset, length): run on that slice of the per-row input only (fan-out chunks).
        All of it runs inside `leak_guard.masked`: what it prints, logs or raises (a satellite's own Failure too)."""
        hidden = secret_values.visible_values(cluster, step, sources=sources)  # their values: read at each run
        leak_guard.remember(context.run.run_id, hidden)  # the IO manager masks the output's writing with them too
        with leak_guard.masked(hidden):
            return _compute(context, tables, chunk, hidden)

    def _compute(context, tables: dict[str, StoredTable], chunk: tuple[int, int] | None, hidden: list[str]) -> Any:
        try:
            ctx, config = prepare(context, tables, hidden)
            if chunk is not None and ctx.rows is not None:
                ctx.rows = ctx.rows.slice(*chunk)
        except UserError as exc:
            # A user mistake (a template, config value or secret that does not resolve), not a crash: a plain
            # message, and no automatic retry (it cannot heal itself).
            raise Failure(
                description=secret_values.mask(step_failure.described(step, exc, str(exc)), hidden),
                metadata={**step_failure.location_metadata(step, exc), keys.CAUSE: step_errors.cause(exc)},
                allow_retries=False,
            ) from None
        try:
            # masking a lazy result computes it: within the step's time limit too
            value = step_timeout.call(
                lambda: secret_values.mask_output(step.satellite.fn(ctx, config), hidden), timeout_s, step
            )
        except RowFailed as exc:
            raise Failure(
                description=secret_values.mask(str(exc), hidden),
                metadata={**step_failure.location_metadata(step), **secret_values.mask_value(ctx.metadata, hidden)},
            ) from None
        except Failure:
            raise  # the satellite chose its words and whether to retry (masked on the way out)
        except Exception as exc:
            # exo's errors by their branch of errors.ExoError (a UserError is never retried), others by their type
            error_kind = step_errors.kind(exc)
            if error_kind != step_errors.BUG:  # the satellite's message first, no stack trace, retried only if worth it
                raise step_failure.step_failure(
                    exc,
                    error_kind,
                    step,
                    lambda text: secret_values.mask(text, hidden),
                    secret_values.mask_value(ctx.metadata, hidden) or None,
                ) from None
            if secret_values.leaks(exc, hidden):
                raise secret_values.masked_failure(exc, hidden) from None
            raise
        metadata = secret_values.mask_value(ctx.metadata, hidden)
        if isinstance(metadata.get(keys.COLUMN_SCHEMA), dict):  # ctx.describe_output: {column: type}
            metadata[keys.COLUMN_SCHEMA] = column_schema(metadata[keys.COLUMN_SCHEMA])
        return Output(value, metadata=metadata) if metadata else value

    def prepare(context, tables: dict[str, StoredTable], hidden: list[str]) -> tuple[StepContext, Any]:
        broken = preset_rules.step_problems(step.satellite, step.config, step.spec.input)
        if broken:  # the checker refuses these; a step built some other way is refused here, before any call
            raise StepInputError(
                f"step `{step.identifier}` changes what `{step.satellite.id}` fixes: " + "; ".join(broken)
            )
        tables = {ident: dataclasses.replace(t, name=ident) for ident, t in tables.items()}
        given = secret_values.resolve_all(step.secrets)
        values = run_inputs.step_values(cluster, context) if step.role == "main" else None
        extra = roots(context) if roots else None
        resolve = _memo(make_resolver(cluster, step, tables, roots=extra, inputs=values))
        config = validate_config(step, resolve, cluster.base_dir, hidden)
        plain_input = render_section(
            step, {k: v for k, v in step.spec.input.items() if not is_per_row(v)}, resolve, "input"
        )
        ctx = StepContext(
            cluster=cluster.spec.identifier,
            step=step.identifier,
            run_id=context.run.run_id,
            root_run_id=getattr(context.run, "root_run_id", None) or context.run.run_id,
            input=plain_input,
            rows=per_row_frame(step, tables, resolve),
            tables=tables,
            previous=tables.get(previous) if previous else None,
            secrets=given,
            base_dir=cluster.base_dir,
            log=secret_values.MaskingLog(context.log, hidden),
            identity=(
                step.satellite.id,
                step.satellite.version,
                row_identity(config.model_dump(mode="json", by_alias=True), extra),
            ),
            concurrency=step.spec.concurrency or 8,
            on_row_error=step.spec.on_row_error,
            cache_path=row_cache.cache_file(cluster.job_name) if step.spec.cache else None,
            hidden=hidden,
        )
        return ctx, config

    return compute
