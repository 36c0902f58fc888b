"""satellite/exospherehost/forward-logs: ship log records to an HTTP log sink.

Made for a cluster's `logs:` section, where it follows the finished run's log records (timestamp,
level, message, step, event_type, run_id, cluster, job); anywhere else it sends `input.table` or the
previous step's output. Records go in batches of `batch-size`, as one JSON array or as JSON lines
(NDJSON, what Vector, Fluent Bit and Logstash HTTP inputs take), each batch with an idempotency key;
`min-level` drops records below a level (on top of the section's own `level`).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Literal

import polars as pl
from pydantic import Field

from exo_dagster.sdk import StepContext, satellite
from satellites.notify._http import Deliveries, HttpConfig, batch_key, check, chunks, client, input_table, plain

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ForwardLogsConfig(HttpConfig):
    url: str = Field(description="The HTTP log sink's URL (e.g. a Vector, Fluent Bit or Logstash HTTP input).")
    format: Literal["json-array", "json-lines"] = Field(
        "json-lines", description="How a batch is sent: JSON lines (NDJSON) or one JSON array."
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="Records per request (1 to 100000).")
    min_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = Field(
        None,
        description="Drop records below this level (on top of the `logs:` section's own `level`); default: send all.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Fields added to every record (e.g. service, env)."
    )


@satellite(
    "satellite/exospherehost/forward-logs",
    config=ForwardLogsConfig,
    inputs={"table": "log records (default: the previous step, i.e. the run's logs in a `logs:` section)"},
    outputs={
        "batch": "batch number",
        "records": "records sent",
        "status": "HTTP status",
        "idempotency_key": "key sent",
    },
    kinds=("http",),
)
def forward_logs(ctx: StepContext, config: ForwardLogsConfig) -> pl.DataFrame:
    """Posts log records to an HTTP log sink in batches (JSON lines or a JSON array).
    A retry or re-execution resends only the batches the sink has not accepted in that run; a crash right after a
    delivery resends that batch once, with the same idempotency key."""
    table = input_table(ctx)
    if table is None:
        raise ValueError("forward-logs needs records: use it in a cluster's `logs:` section, or give `input.table`")
    if config.min_level and "level" in table.collect_schema().names():
        floor = logging.getLevelName(config.min_level)
        keep = [name for name in LEVELS if logging.getLevelName(name) >= floor]
        table = table.filter(pl.col("level").is_in(keep))
    out = []

    def deliver(http, records: list[dict], key: str) -> dict:
        headers = {config.idempotency_header: key} if config.idempotency_header else {}
        if config.format == "json-lines":
            body = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode()
            headers["Content-Type"] = "application/x-ndjson"
        else:
            body = json.dumps(records, ensure_ascii=False, default=str).encode()
            headers["Content-Type"] = "application/json"
        response = http.post(config.url, content=body, headers=headers)
        check(response)
        return {"status": response.status_code}

    # a retry after a failed batch resends only the batches the sink has not accepted
    with client(ctx, config) as http, Deliveries(ctx) as deliveries:
        for number, records in enumerate(chunks(table, config.batch_size)):
            records = [{**config.labels, **plain(r)} for r in records]
            key = batch_key(ctx, records)
            status = deliveries.once(key, functools.partial(deliver, http, records, key))["status"]
            out.append({"batch": number, "records": len(records), "status": status, "idempotency_key": key})
    ctx.log.info(f"forward-logs: {sum(r['records'] for r in out)} record(s) in {len(out)} batch(es) to the log sink")
    return pl.DataFrame(
        out, schema={"batch": pl.Int64, "records": pl.Int64, "status": pl.Int64, "idempotency_key": pl.Utf8}
    )
