"""satellite/exospherehost/call-webhook: an HTTP request per row, or per batch of rows.

Per row (`mode: per-row`, or `auto` with `$${{ }}` input): one request per input row, concurrent,
each with an `Idempotency-Key` header (the row's cache key, so a re-run skips finished rows and a
retried row carries the same key); a row's `url`, `method` or `body` input overrides the config,
and the other input columns form the JSON body. A failed row lands in `_error`.

Per batch: the input table (`input.table`, else the previous step) is sent as JSON arrays of
`batch-size` rows, or `body` is sent once; a failing batch fails the step (its retries resend with
the same idempotency keys).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import polars as pl
from pydantic import Field

from exo_dagster.sdk import StepContext, retrying, satellite
from exo_dagster.sdk.retrying import Retry
from satellites.notify._http import (
    Deliveries,
    HttpConfig,
    Mode,
    batch_key,
    check,
    chunks,
    client,
    input_table,
    map_each_row,
    per_row,
    plain,
    response_text,
)

ROW_KEYS = ("url", "method", "body")
NO_BODY = ("GET", "HEAD", "DELETE", "OPTIONS")


class CallWebhookConfig(HttpConfig):
    url: str = Field(description="The endpoint to call (a row's `url` input overrides it).")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = Field(
        "POST",
        description="The HTTP method (a row's `method` input overrides it); GET, HEAD, DELETE and OPTIONS "
        "send a mapping body as query parameters.",
    )
    body: Any = Field(
        None,
        description="A fixed JSON body (a string is sent as text); per batch it is sent once instead of the "
        "rows; default: the row's other columns, or the rows.",
    )
    mode: Mode = Field(
        "auto",
        description="per-row: one request per input row; per-batch: the rows as JSON arrays; auto: per row "
        "when the step has per-row (`$${{ }}`) input.",
    )
    batch_size: int = Field(100, ge=1, description="Rows per request in per-batch mode.")
    expect: list[int] | None = Field(None, description="The HTTP statuses that count as success; default: any 2xx.")
    concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Per row: requests in flight at once (1 to 1024); default: the step's `concurrency`.",
    )


def send(http, method: str, url: str, body: Any, key: str | None, config: CallWebhookConfig):
    headers = {config.idempotency_header: key} if key and config.idempotency_header else {}
    method = method.upper()
    if body is None:
        return http.request(method, url, headers=headers)
    if method in NO_BODY:
        params = {k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else None
        return http.request(method, url, headers=headers, params=plain(params))
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return http.request(method, url, headers=headers, content=body.encode())
    return http.request(method, url, headers=headers, json=plain(body))


TRANSPORT_RETRY = Retry(attempts=4, delay=0.05, jitter=(0.5, 1.5))


def send_retrying(http, method: str, url: str, body: Any, key: str | None, config: CallWebhookConfig):
    """`send`, again on a transport failure (connection reset or refused, a dropped keep-alive socket):
    the request carries its idempotency key, so the receiver can tell a repeat from a new call."""
    import httpx

    return retrying.call(
        lambda: send(http, method, url, body, key, config), TRANSPORT_RETRY, retry_on=httpx.TransportError
    )


@satellite(
    "satellite/exospherehost/call-webhook",
    config=CallWebhookConfig,
    inputs={
        "*": "per row: the JSON body's fields (`url`, `method`, `body` override the config)",
        "table": "per batch: the rows to send (default: the previous step's output)",
    },
    outputs={
        "status": "HTTP status",
        "response": "response body (first 64 KiB)",
        "batch": "per batch: batch number",
        "rows": "per batch: rows sent",
        "idempotency_key": "key sent",
    },
    kinds=("http",),
    overrides=ROW_KEYS,  # a row's url/method/body replace the config's (a preset's fixed ones cannot be given)
)
def call_webhook(ctx: StepContext, config: CallWebhookConfig) -> pl.DataFrame:
    """Calls an HTTP endpoint once per row or once per batch, with idempotency keys, timeouts, redirects and TLS checks.
    Retries and re-executions send nothing twice: a finished row comes from the row cache (in later runs too), a
    batch the endpoint accepted is not resent in the same run or partition (a new run sends it again); a crash
    between the endpoint's answer and exo's record resends once, with the same `Idempotency-Key`."""
    with client(ctx, config) as http:
        if per_row(ctx, config.mode):
            return _per_row(ctx, config, http)
        return _per_batch(ctx, config, http)


def _per_row(ctx: StepContext, config: CallWebhookConfig, http) -> pl.DataFrame:
    def one(row: dict, key: str) -> dict:
        body = (
            row["body"]
            if "body" in row
            else (config.body if config.body is not None else {k: v for k, v in row.items() if k not in ROW_KEYS})
        )
        response = send_retrying(
            http, row.get("method") or config.method, row.get("url") or config.url, body, key, config
        )
        check(response, config.expect)
        return {"status": response.status_code, "response": response_text(response)}

    return map_each_row(ctx, "call-webhook", "{id: $${{ satellites.X.output.id }}}", one, config.concurrency)


def _per_batch(ctx: StepContext, config: CallWebhookConfig, http) -> pl.DataFrame:
    table = input_table(ctx)
    bodies = [config.body] if config.body is not None or table is None else list(chunks(table, config.batch_size))
    out = []

    def deliver(body: Any, key: str) -> dict:
        response = send(http, config.method, config.url, body, key, config)
        check(response, config.expect)
        return {"status": response.status_code, "response": response_text(response)}

    with Deliveries(ctx) as deliveries:  # a retried step or re-executed run does not resend an accepted batch
        for number, body in enumerate(bodies):
            key = batch_key(ctx, plain(body))
            result = deliveries.once(key, functools.partial(deliver, body, key))
            out.append(
                {"batch": number, "rows": len(body) if isinstance(body, list) else 1, **result, "idempotency_key": key}
            )
            ctx.log.info(f"call-webhook: batch {number} -> {result['status']}")
    return pl.DataFrame(
        out,
        schema={
            "batch": pl.Int64,
            "rows": pl.Int64,
            "status": pl.Int64,
            "response": pl.Utf8,
            "idempotency_key": pl.Utf8,
        },
    )
