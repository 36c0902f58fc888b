"""What the HTTP satellites share (call-webhook, send-alert, forward-logs): client settings, the
per-row / per-batch choice, request rows, and response checks.

httpx is imported only when a step runs, so the catalog loads without the `notify` extra.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import polars as pl
from pydantic import Field, field_validator

from exo_dagster import keys
from exo_dagster.errors import ExoError
from exo_dagster.sdk import SatelliteConfig, StepContext, duration_seconds
from exo_dagster.sdk.hashing import sha256_text
from exo_dagster.sdk.tls import tls_context as _tls_context

MAX_RESPONSE_CHARS = 65536  # kept per response in the output table
IDEMPOTENCY_HEADER = "Idempotency-Key"


class HttpConfig(SatelliteConfig):
    """Client settings: how long to wait, whether to follow redirects, how to check TLS."""

    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers sent with every request.")
    timeout: float | str = Field(
        30.0, description="How long to wait for a response: seconds, or a duration such as `10s` or `2m`."
    )
    follow_redirects: bool = Field(True, description="Follow HTTP redirects.")
    max_redirects: int = Field(5, ge=0, le=50, description="The most redirects followed for one request (0 to 50).")
    verify_tls: bool = Field(
        True, description="Check the server's TLS certificate; false only for a test server you trust."
    )
    ca_bundle: str | None = Field(
        None, description="A PEM file of extra CA certificates to trust (relative to the cluster file's folder)."
    )
    client_cert: str | None = Field(
        None,
        description="A PEM file with a client certificate and its key, for mutual TLS (relative to the "
        "cluster file's folder).",
    )
    idempotency_header: str | None = Field(
        IDEMPOTENCY_HEADER, description="The header that carries each request's idempotency key; null: send none."
    )

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if duration_seconds(value) <= 0:
            raise ValueError("timeout must be more than 0 seconds")
        return value


def client(ctx: StepContext, config: HttpConfig):
    """An httpx.Client from the config (thread-safe: shared by the step's worker threads)."""
    import httpx

    verify: Any = tls_context(ctx, config)
    return httpx.Client(
        headers={"User-Agent": "exo-dagster", **config.headers},
        timeout=duration_seconds(config.timeout),
        follow_redirects=config.follow_redirects,
        max_redirects=config.max_redirects,
        verify=verify,
        trust_env=True,
    )


def tls_context(ctx: StepContext, config: HttpConfig) -> ssl.SSLContext | bool:
    """True (system CAs), False (no checks), or a context with the extra CA bundle / client certificate."""
    if not config.ca_bundle and not config.client_cert:
        return config.verify_tls
    return _tls_context(
        ctx.path(config.ca_bundle) if config.ca_bundle else None,
        verify=config.verify_tls,
        client_cert=ctx.path(config.client_cert) if config.client_cert else None,
    )


class HttpStatusError(ExoError, RuntimeError):
    """A response whose status is not what the step expects."""


def check(response, expect: list[int] | None = None) -> None:
    ok = response.status_code in expect if expect else 200 <= response.status_code < 300
    if not ok:
        body = response.text[:500]
        raise HttpStatusError(
            f"{response.request.method} {_safe_url(str(response.request.url))} answered "
            f"{response.status_code} {response.reason_phrase}: {body}"
        )


def _safe_url(url: str) -> str:
    """A URL without its query string (webhook tokens often ride there)."""
    return url.split("?", 1)[0]


def response_text(response) -> str:
    return response.text[:MAX_RESPONSE_CHARS]


Mode = Literal["auto", "per-row", "per-batch"]


def per_row(ctx: StepContext, mode: Mode) -> bool:
    """`auto` means per row when the step has per-row input (`$${{ }}`), else one batch."""
    return ctx.rows is not None if mode == "auto" else mode == "per-row"


def input_table(ctx: StepContext) -> pl.LazyFrame | None:
    """The rows a per-batch step sends: its per-row input, `input.table`, or the previous output."""
    if ctx.rows is not None:
        return ctx.rows
    table = ctx.input_table("table")
    return table.lazy() if table is not None else None


def chunks(frame: pl.LazyFrame | pl.DataFrame, size: int) -> Iterator[list[dict]]:
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect(engine="streaming")
    for part in frame.iter_slices(size):
        yield part.to_dicts()


def batch_key(ctx: StepContext, rows: Any) -> str:
    """An idempotency key for a whole batch: the satellite's identity plus the batch's content."""
    satellite_id, version, config = ctx.identity
    text = json.dumps([satellite_id, version, config, rows], sort_keys=True, default=str)
    return sha256_text(text)


def plain(value: Any) -> Any:
    """JSON-ready: tables become lists of rows; dates and others become strings."""
    from exo_dagster.sdk.table import StoredTable

    if isinstance(value, StoredTable):
        return value.collect().to_dicts()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def dumps(value: Any) -> bytes:
    return json.dumps(plain(value), default=str, ensure_ascii=False).encode()


def map_each_row(
    ctx: StepContext, satellite: str, example: str, fn: Callable[[dict, str], dict], concurrency: int | None
) -> pl.DataFrame:
    """Per-row mode: `fn(row, row key)` for each input row (finished rows come from the row cache), the
    rows beside their results; `example` shows the per-row `input:` the satellite wants."""
    if ctx.rows is None:
        raise ValueError(f"{satellite} `mode: per-row` needs per-row input, e.g. `input: {example}`")
    rows = ctx.rows.collect(engine="streaming")
    return with_results(rows, ctx.map_rows(fn, rows, concurrency=concurrency))


def send_once(
    ctx: StepContext,
    value: Any,
    fn: Callable[[Any, str], dict],
    schema: Mapping[str, pl.DataType | type[pl.DataType]],
) -> tuple[dict, pl.DataFrame]:
    """Batch mode: `fn(value, key)` once, keyed by the satellite and the value; its result and the one-row
    output table (`schema` plus `idempotency_key`)."""
    key = batch_key(ctx, value)
    with Deliveries(ctx) as deliveries:
        out = deliveries.once(key, lambda: fn(value, key))
    return out, pl.DataFrame([{**out, "idempotency_key": key}], schema={**schema, "idempotency_key": pl.Utf8})


class Deliveries:
    """Batches sent at most once per unit of work: the partition in a partitioned run, else the run with its step
    retries and re-executions (Dagster's root run). A batch the receiver already accepted there is not sent again:
    its recorded result is used (metadata `exo/batches_cached`). A new run sends again: identical content from a
    later run is a new notification. The record is made after the receiver answers, so a crash in between resends
    once, with the same idempotency key. Kept in the step's row cache; `cache: false` sends every time."""

    def __init__(self, ctx: StepContext):
        self.ctx = ctx
        partition = ctx.identity[2].get(keys.PARTITION) if isinstance(ctx.identity[2], dict) else None
        self.scope = f"partition:{partition}" if partition is not None else f"run:{ctx.root_run_id or ctx.run_id}"
        self.cache = None

    def __enter__(self) -> Deliveries:
        if self.ctx.cache_path:
            from exo_dagster.sdk.row_cache import open_cache

            self.cache = open_cache(self.ctx.cache_path)
        return self

    def __exit__(self, *exc) -> None:
        if self.cache is not None:
            self.cache.close()

    def once(self, key: str, send: Callable[[], dict]) -> dict:
        if self.cache is None:
            return send()
        record = sha256_text(json.dumps([keys.DELIVERED_SCOPE, key, self.scope]))
        done = self.cache.get_many([record]).get(record)
        if done is not None:
            self.ctx.metadata[keys.BATCHES_CACHED] = self.ctx.metadata.get(keys.BATCHES_CACHED, 0) + 1
            return done
        result = send()
        self.cache.put(record, self.ctx.step, self.ctx._mask_result(result))
        return result


def with_results(rows: pl.DataFrame, result: pl.DataFrame) -> pl.DataFrame:
    """The input rows beside their results (a result column wins over an input column of the same name)."""
    return pl.concat([rows.drop([c for c in result.columns if c in rows.columns]), result], how="horizontal")
