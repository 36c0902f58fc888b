"""satellite/exospherehost/llm-complete: one OpenAI-compatible chat completion per row.

Rows come from `input:` (`prompt`, `messages`, `system`, templated per row with `$${{ }}`); every
other input key passes through as a column. Calls are concurrent, rate-limited and retried
(satellites/ai/llm_client.py); each finished row is queued to the row cache as it returns and
group-committed within ~100 ms, so a re-run never pays twice for a cached row. JSON output is checked
against `output-schema` and re-asked when wrong (satellites/ai/llm_output.py). `mode: batch` writes the
OpenAI Batch JSONL instead of calling, and `batch-results` reads a finished batch back into the same
columns (and the same cache).
aiohttp and jsonschema are imported only when a step runs, so the catalog loads without the `ai` extra.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

import polars as pl
from pydantic import Field, field_validator, model_validator

from exo_dagster import keys
from exo_dagster.sdk import SatelliteConfig, StepContext, satellite
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.row_cache import open_cache, row_key
from exo_dagster.sdk.step_errors import PermanentError
from satellites.ai import llm_output

OPENAI_BASE_URL = "https://api.openai.com/v1"
REQUEST_COLUMNS = ("prompt", "messages", "system")
USAGE_COLUMNS = {"model": pl.Utf8, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64, "total_tokens": pl.Int64}
# List prices, USD per million tokens (input, output); `input-cost-per-million` / `output-cost-per-million` override.
PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}
REASK = (
    "Your previous reply was rejected: {error}. Reply again with only one JSON object{schema_hint}, "
    "no prose and no code fence."
)
_DTYPES = {"string": pl.Utf8, "integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}


class LlmCompleteConfig(SatelliteConfig):
    model: str = Field(description="The model name the server knows (e.g. gpt-4o-mini).")
    base_url: str | None = Field(
        None, description="The OpenAI-compatible API's base URL; default: $OPENAI_BASE_URL, else OpenAI."
    )
    system: str | None = Field(None, description="A system message for every row (a per-row `system` input wins).")
    temperature: float | None = Field(
        None, ge=0, le=2, description="Sampling temperature, 0 to 2; default: the server's."
    )
    max_tokens: int | None = Field(
        None, ge=1, description="The most tokens one answer may have; default: the server's."
    )
    output_format: Literal["text", "json"] = Field(
        "text", description="text: the answer in a `text` column; json: a JSON object whose fields become columns."
    )
    output_schema: dict[str, Any] | None = Field(
        None,
        description="The answer's shape: a JSON Schema, or `{field: type}` with string, integer, number, "
        "boolean, array, object, any, a list of allowed values, `[type]` or a nested map; "
        "implies output-format json.",
    )
    response_format: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto",
        description="The `response_format` sent for json output; auto: json_schema when the schema names "
        "fields, else json_object; none: send none.",
    )
    max_reasks: int = Field(
        2,
        ge=0,
        le=10,
        description="Invalid JSON or a schema mismatch: ask again this many times (0 to 10), then the row's `_error`.",
    )
    strip_reasoning: bool = Field(True, description="Drop `<think>...</think>` reasoning before reading the answer.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="More request fields sent as they are (seed, top_p, ...)."
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Requests in flight at once (1 to 1024); default: the step's `concurrency` (8).",
    )
    requests_per_minute: float | None = Field(None, gt=0, description="Rate limit on requests; default: none.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Rate limit on tokens; default: none.")
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for one request.")
    max_retries: int = Field(
        6, ge=0, le=50, description="Retries of a request after 429, 5xx, a timeout or a broken connection (0 to 50)."
    )
    backoff: float = Field(
        0.5,
        ge=0,
        description="The first retry's delay in seconds, doubled each time, with jitter "
        "(a `Retry-After` answer is honoured).",
    )
    max_backoff: float = Field(30.0, ge=0, description="The longest delay between retries, in seconds.")
    input_cost_per_million: float | None = Field(
        None,
        ge=0,
        description="USD per million prompt tokens, for the cost estimate; default: the list price "
        "of known OpenAI models.",
    )
    output_cost_per_million: float | None = Field(
        None,
        ge=0,
        description="USD per million completion tokens, for the cost estimate; default: the list "
        "price of known OpenAI models.",
    )
    mode: Literal["online", "batch"] = Field(
        "online",
        description="online: call the API; batch: write the uncached rows as OpenAI Batch JSONL (or read "
        "`batch-results` back).",
    )
    batch_path: str | None = Field(
        None,
        description="Batch mode: the JSONL file to write (relative to the data folder); default: "
        "`batches/<step>.jsonl`.",
    )
    batch_results: str | None = Field(
        None,
        description="Batch mode: an OpenAI Batch output file (relative to the cluster file's folder) to read "
        "back into the same columns and the row cache.",
    )

    @field_validator("output_schema")
    @classmethod
    def _schema_readable(cls, value: dict | None) -> dict | None:
        if value is not None:
            llm_output.to_json_schema(value)  # ValueError -> a located config error at load time
        return value

    @model_validator(mode="after")
    def _json_when_schema(self) -> LlmCompleteConfig:
        if self.output_schema is not None and self.output_format != "json":
            if "output_format" in self.model_fields_set:
                raise ValueError("output-schema needs output-format: json (or leave output-format out)")
            object.__setattr__(self, "output_format", "json")
        return self

    def json_schema(self) -> dict | None:
        return llm_output.to_json_schema(self.output_schema) if self.output_format == "json" else None


class DeepSeekR1Config(LlmCompleteConfig):
    """The same satellite, pointed at a DeepSeek-R1 distill on any OpenAI-compatible server."""

    model: str = Field(
        "deepseek-r1-distill-llama-70b",
        description="The model name the server knows; default: $EXO_DEEPSEEK_MODEL, else "
        "deepseek-r1-distill-llama-70b.",
    )


INPUTS = {
    "prompt": "the user message, per row",
    "messages": "a chat ([{role, content}] or its JSON), per row",
    "system": "a system message, per row",
    "*": "any other key passes through as a column",
}
OVERRIDES = ("system",)  # config fields an input of the same name replaces (per row or for every row)
OUTPUTS = {
    "<field>": "each output-schema field (json), or `text`",
    "model": "the model that answered",
    "prompt_tokens": "",
    "completion_tokens": "",
    "total_tokens": "",
    "_error": "why the row failed",
}


@satellite(
    "satellite/exospherehost/llm-complete",
    config=LlmCompleteConfig,
    inputs=INPUTS,
    outputs=OUTPUTS,
    resources={"cpu": 1},
    overrides=OVERRIDES,
)
def llm_complete(ctx: StepContext, config: LlmCompleteConfig) -> pl.DataFrame:
    """OpenAI-compatible chat completion per row:
    JSON validated against output-schema, rate-limited, retried, cached."""
    return run(ctx, config, base_url=config.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL)


@satellite(
    "satellite/exospherehost/deepseek-r1-distrill-llama-70b",
    config=DeepSeekR1Config,
    inputs=INPUTS,
    outputs=OUTPUTS,
    resources={"cpu": 1},
    overrides=OVERRIDES,
)
def deepseek_r1(ctx: StepContext, config: DeepSeekR1Config) -> pl.DataFrame:
    """llm-complete for DeepSeek-R1-Distill-Llama-70B on an OpenAI-compatible endpoint
    (base-url or $EXO_DEEPSEEK_BASE_URL)."""
    base_url = config.base_url or os.environ.get("EXO_DEEPSEEK_BASE_URL")
    if not base_url:
        raise PermanentError(
            "deepseek-r1-distrill-llama-70b needs the endpoint that serves the model: set config "
            "`base-url` (e.g. http://vllm:8000/v1) or the EXO_DEEPSEEK_BASE_URL environment variable"
        )
    if "model" not in config.model_fields_set and os.environ.get("EXO_DEEPSEEK_MODEL"):
        config = config.model_copy(update={"model": os.environ["EXO_DEEPSEEK_MODEL"]})
    return run(ctx, config, base_url=base_url)


# -- the step ----------------------------------------------------------------------------------
def run(ctx: StepContext, config: LlmCompleteConfig, *, base_url: str) -> pl.DataFrame:
    schema = config.json_schema()
    rows = request_rows(ctx)
    request_cols = [c for c in REQUEST_COLUMNS if c in rows.columns]
    # The cache identity is what decides the answer, not how fast it is fetched: changing
    # concurrency, rate limits or timeouts must not make a re-run pay again.
    semantic = config.model_dump(
        mode="json",
        by_alias=True,
        include={
            "model",
            "system",
            "temperature",
            "max_tokens",
            "output_format",
            "output_schema",
            "response_format",
            "strip_reasoning",
            "extra_body",
        },
    )
    semantic["base-url"] = base_url
    step_ctx = dataclasses.replace(ctx, identity=(ctx.identity[0], ctx.identity[1], semantic))
    if config.mode == "batch" and not config.batch_results:
        return write_batch(step_ctx, config, rows, request_cols, schema)
    if config.mode == "batch":
        result = read_batch(step_ctx, config, rows.select(request_cols), schema)
        return _output(rows, result, schema)

    from satellites.ai.llm_client import ChatClient

    concurrency = config.concurrency or ctx.concurrency
    client = ChatClient(
        base_url=base_url,
        api_key=ctx.secrets.get("API_KEY"),
        timeout=config.timeout,
        max_retries=config.max_retries,
        backoff=config.backoff,
        max_backoff=config.max_backoff,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
        max_connections=concurrency,
        mask_values=list(ctx.secrets.values()),
    )
    if not client.api_key and base_url.rstrip("/") == OPENAI_BASE_URL:
        raise PermanentError(
            "llm-complete calls OpenAI but was given no key: map one in the step's config, "
            "`secrets: [API_KEY: ${{ secrets.OPENAI_API_KEY }}]`"
        )
    reasks = [0]

    async def one(row: dict, key: str) -> dict:
        body = request_body(config, build_messages(row, config, schema), schema)
        prompt_tokens = completion_tokens = 0
        for attempt in range(config.max_reasks + 1):
            completion = await client.complete(body, idempotency_key=key if attempt == 0 else f"{key}-{attempt}")
            prompt_tokens += completion.prompt_tokens
            completion_tokens += completion.completion_tokens
            usage = {
                "model": completion.model,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            try:
                return {**answer(completion.text, config, schema), **usage}
            except llm_output.InvalidOutput as exc:
                if attempt == config.max_reasks:
                    raise llm_output.InvalidOutput(f"{exc} (asked {attempt + 1} time(s))") from None
                reasks[0] += 1
                hint = " matching the JSON Schema given before" if llm_output.fields(schema) else ""
                body = {
                    **body,
                    "messages": [
                        *body["messages"],
                        {"role": "assistant", "content": completion.text},
                        {"role": "user", "content": REASK.format(error=exc, schema_hint=hint)},
                    ],
                }
        raise AssertionError("unreachable")

    try:
        # Big batches: the map drains its in-flight requests at every batch end (one event loop and
        # connection pool serve every batch); finished rows are committed to the cache as they go anyway.
        result = step_ctx.map_rows(
            one, rows.select(request_cols), concurrency=concurrency, batch_size=max(concurrency * 256, 16384)
        )
    finally:
        _report(ctx, config, client.stats, reasks[0])
    out = _output(rows, result, schema)
    failed = out["_error"].drop_nulls().len()
    ctx.metadata[keys.LLM_ROWS_FAILED] = failed
    if client._fatal is not None:
        # every other row would fail the same way (a bad key, a missing model): never retried; the step
        # reports ctx.metadata (the usage so far) with the failure
        raise PermanentError(f"step `{ctx.step}` stopped calling {base_url}: {client._fatal}")
    ctx.log.info(
        f"llm-complete `{ctx.step}`: {out.height} row(s), {client.stats.requests} request(s), "
        f"{failed} failed, {ctx.metadata.get(keys.ROWS_CACHED, 0)} from the row cache"
    )
    return out


def request_rows(ctx: StepContext) -> pl.DataFrame:
    """Per-row input (`$${{ }}`), else `prompt`/`messages` given whole (a value, or a list: one row each)."""
    if ctx.rows is not None:
        rows = ctx.rows.collect() if isinstance(ctx.rows, pl.LazyFrame) else ctx.rows
    else:
        given = {k: ctx.input[k] for k in REQUEST_COLUMNS if k in ctx.input}
        if "prompt" in given and isinstance(given["prompt"], list):
            rows = pl.DataFrame({"prompt": [None if p is None else str(p) for p in given["prompt"]]})
        elif given:
            rows = pl.DataFrame(
                {k: [json.dumps(v) if k == "messages" and not isinstance(v, str) else v] for k, v in given.items()}
            )
        else:
            rows = pl.DataFrame()
    if "prompt" not in rows.columns and "messages" not in rows.columns:
        have = ", ".join(rows.columns) or "nothing"
        raise PermanentError(
            f"step `{ctx.step}` needs `input.prompt` or `input.messages` (it has: {have}); e.g. "
            '`prompt: "Label this ticket: $${{ satellites.tickets.output.text }}"`'
        )
    return rows


def build_messages(row: dict, config: LlmCompleteConfig, schema: dict | None) -> list[dict]:
    messages: list[dict] = []
    system = row.get("system") or config.system
    if schema is not None:
        rule = "Reply with one JSON object and nothing else."
        if llm_output.fields(schema):
            rule += " It must match this JSON Schema: " + json.dumps(schema, sort_keys=True)
        system = f"{system}\n\n{rule}" if system else rule
    if system:
        messages.append({"role": "system", "content": str(system)})
    chat = row.get("messages")
    if isinstance(chat, str):
        try:
            chat = json.loads(chat)
        except json.JSONDecodeError:
            raise ValueError("input `messages` is not JSON; give a list of {role, content}") from None
    for m in chat or []:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant", "developer")
            or m.get("content") is None
        ):
            raise ValueError(f"each message needs a role (system/user/assistant) and content, got {m!r}"[:300])
        messages.append({"role": m["role"], "content": m["content"]})
    if row.get("prompt") is not None:
        messages.append({"role": "user", "content": str(row["prompt"])})
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("this row has no prompt (the prompt is empty/null and no user message was given)")
    return messages


def request_body(config: LlmCompleteConfig, messages: list[dict], schema: dict | None) -> dict:
    body: dict[str, Any] = {**config.extra_body, "model": config.model, "messages": messages}
    if config.temperature is not None:
        body["temperature"] = config.temperature
    if config.max_tokens is not None:
        body["max_tokens"] = config.max_tokens
    if schema is not None and config.response_format != "none":
        kind = config.response_format
        if kind == "auto":
            kind = "json_schema" if llm_output.fields(schema) else "json_object"
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
            if kind == "json_schema"
            else {"type": "json_object"}
        )
    return body


def answer(text: str, config: LlmCompleteConfig, schema: dict | None) -> dict:
    """A reply's output columns (raises InvalidOutput for JSON that does not fit)."""
    if config.strip_reasoning:
        text = llm_output.strip_reasoning(text)
    if schema is None:
        return {"text": text}
    return llm_output.parse(text, schema)


def _output(rows: pl.DataFrame, result: pl.DataFrame, schema: dict | None) -> pl.DataFrame:
    """Input columns, then the answer columns with stable types (even when every row failed)."""
    if schema is None:
        answer_types = {"text": pl.Utf8}
    elif llm_output.fields(schema):
        answer_types = {name: _dtype(spec) for name, spec in llm_output.fields(schema).items()}
    else:
        answer_types = {"json": pl.Utf8}
    typed = {**answer_types, **USAGE_COLUMNS, "_error": pl.Utf8, "_row_key": pl.Utf8}
    cols = [
        (pl.col(n).cast(t, strict=False) if n in result.columns else pl.lit(None, dtype=t)).alias(n)
        for n, t in typed.items()
    ]
    answers = result.select(cols)
    keep = [c for c in rows.columns if c not in typed]
    return pl.concat([rows.select(keep), answers], how="horizontal")


def _dtype(spec: dict) -> pl.DataType | type[pl.DataType]:
    kind = spec.get("type")
    if kind == "array" and (spec.get("items") or {}).get("type") == "string":
        return pl.List(pl.Utf8)
    return _DTYPES.get(kind, pl.Utf8) if isinstance(kind, str) else pl.Utf8


def _report(ctx: StepContext, config: LlmCompleteConfig, stats, reasks: int) -> None:
    meta = ctx.metadata
    meta.update(
        {
            keys.LLM_MODEL: config.model,
            keys.LLM_REQUESTS: stats.requests,
            keys.LLM_RETRIES: stats.retries,
            keys.LLM_RATE_LIMITED: stats.rate_limited,
            keys.LLM_SERVER_ERRORS: stats.server_errors,
            keys.LLM_TIMEOUTS: stats.timeouts,
            keys.LLM_REASKS: reasks,
            keys.LLM_PROMPT_TOKENS: stats.prompt_tokens,
            keys.LLM_COMPLETION_TOKENS: stats.completion_tokens,
            keys.LLM_TOTAL_TOKENS: stats.prompt_tokens + stats.completion_tokens,
        }
    )
    cost = estimated_cost(config, stats.prompt_tokens, stats.completion_tokens)
    if cost is not None:
        meta[keys.LLM_ESTIMATED_COST_USD] = round(cost, 6)
    else:
        meta[keys.LLM_COST_NOTE] = (
            f"no price known for `{config.model}`; set input-cost-per-million and "
            "output-cost-per-million to estimate cost"
        )


def estimated_cost(config: LlmCompleteConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    """This run's spend (rows from the cache cost nothing), from list prices or the configured ones."""
    listed = PRICES.get(config.model)
    price_in = (
        config.input_cost_per_million if config.input_cost_per_million is not None else (listed or (None, None))[0]
    )
    price_out = (
        config.output_cost_per_million if config.output_cost_per_million is not None else (listed or (None, None))[1]
    )
    if price_in is None or price_out is None:
        return None
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


# -- batch mode (OpenAI Batch API files) ----------------------------------------------------------
def write_batch(
    ctx: StepContext, config: LlmCompleteConfig, rows: pl.DataFrame, request_cols: list[str], schema: dict | None
) -> pl.DataFrame:
    """One `{custom_id, method, url, body}` line per row not already in the row cache; custom_id = row key."""
    path = ctx.output_path(config.batch_path or f"batches/{ctx.step}.jsonl")
    records = rows.select(request_cols).to_dicts()
    row_keys = [row_key(*ctx.identity, r) for r in records]
    done: dict = {}
    if ctx.cache_path:
        with open_cache(ctx.cache_path) as cache:
            done = cache.get_many(row_keys)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    written = 0
    with atomic_write(path, "w", encoding="utf-8") as fh:
        for record, key in zip(records, row_keys):
            if key in done:
                continue
            body = request_body(config, build_messages(record, config, schema), schema)
            fh.write(
                json.dumps(
                    {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body},
                    ensure_ascii=False,
                )
                + "\n"
            )
            written += 1
    ctx.metadata.update(
        {
            keys.LLM_BATCH_FILE: path,
            keys.LLM_BATCH_REQUESTS: written,
            keys.LLM_BATCH_ALREADY_DONE: len(records) - written,
        }
    )
    ctx.log.info(f"llm-complete `{ctx.step}`: wrote {written} request(s) to {path} (OpenAI Batch JSONL)")
    return rows.with_columns(
        pl.Series("_row_key", row_keys, dtype=pl.Utf8),
        pl.Series("batched", [k not in done for k in row_keys], dtype=pl.Boolean),
        pl.lit(path).alias("batch_file"),
    )


def read_batch(ctx: StepContext, config: LlmCompleteConfig, rows: pl.DataFrame, schema: dict | None) -> pl.DataFrame:
    """Rows answered from an OpenAI Batch output file (matched by custom_id), committed to the row cache."""
    from satellites.ai.llm_client import parse_completion

    path = ctx.path(config.batch_results)  # type: ignore[arg-type]
    results: dict[str, dict] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    item = json.loads(line)
                    results[item["custom_id"]] = item
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"{path}:{n}: not an OpenAI Batch output line (needs custom_id)") from None
    tokens = [0, 0]

    def one(row: dict, key: str) -> dict:
        item = results.get(key)
        if item is None:
            raise LookupError("this row is not in the batch results (was it in the batch that was sent?)")
        response = item.get("response") or {}
        if item.get("error") or response.get("status_code") != 200:
            raise RuntimeError(f"the batch request failed: {item.get('error') or response.get('status_code')}")
        completion = parse_completion(response.get("body") or {}, config.model)
        tokens[0] += completion.prompt_tokens
        tokens[1] += completion.completion_tokens
        return {
            **answer(completion.text, config, schema),
            "model": completion.model,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }

    result = ctx.map_rows(one, rows, concurrency=1)
    ctx.metadata.update(
        {
            keys.LLM_BATCH_RESULTS: path,
            keys.LLM_PROMPT_TOKENS: tokens[0],
            keys.LLM_COMPLETION_TOKENS: tokens[1],
            keys.LLM_TOTAL_TOKENS: sum(tokens),
            keys.LLM_ROWS_FAILED: result["_error"].drop_nulls().len(),
        }
    )
    cost = estimated_cost(config, *tokens)
    if cost is not None:
        ctx.metadata[keys.LLM_ESTIMATED_COST_USD] = round(cost, 6)
    return result
