"""forward-logs against a real HTTP log sink on 127.0.0.1."""

from __future__ import annotations

import polars as pl

from exo_dagster import StoredTable
from satellites.notify.forward_logs import ForwardLogsConfig, forward_logs
from tests.loopback import http_server, step_context


def _records(tmp_path, n: int) -> StoredTable:
    levels = ["DEBUG", "INFO", "WARNING", "ERROR"]
    frame = pl.DataFrame(
        {
            "timestamp": [f"2026-01-01T00:00:{i % 60:02d}+00:00" for i in range(n)],
            "level": [levels[i % 4] for i in range(n)],
            "message": [f"line {i}" for i in range(n)],
        }
    )
    path = tmp_path / "logs.parquet"
    frame.write_parquet(path)
    return StoredTable(str(path), name="_logs")


def _forward(tmp_path, table, **config):
    cfg = ForwardLogsConfig.model_validate(config)
    ctx = step_context(
        tmp_path,
        previous=table,
        config=cfg.model_dump(mode="json"),
        satellite_id="satellite/exospherehost/forward-logs",
        cache=False,
    )
    return forward_logs(ctx, cfg)


def test_json_lines_in_batches_with_labels(tmp_path):
    with http_server() as sink:
        out = _forward(
            tmp_path, _records(tmp_path, 10), url=f"{sink.url}/ingest", batch_size=4, labels={"service": "exo"}
        )
        got = sink.to("/ingest")
        assert [r.headers["Content-Type"] for r in got] == ["application/x-ndjson"] * 3
        lines = [line for r in got for line in r.lines()]
        assert [line["message"] for line in lines] == [f"line {i}" for i in range(10)]
        assert {line["service"] for line in lines} == {"exo"}
        assert out["records"].to_list() == [4, 4, 2]
        assert [r.headers["Idempotency-Key"] for r in got] == out["idempotency_key"].to_list()


def test_json_array_and_min_level(tmp_path):
    with http_server() as sink:
        _forward(tmp_path, _records(tmp_path, 8), url=f"{sink.url}/logs", format="json-array", min_level="WARNING")
        [request] = sink.to("/logs")
        assert request.headers["Content-Type"] == "application/json"
        assert [(r["level"], r["message"]) for r in request.json()] == [
            ("WARNING", "line 2"),
            ("ERROR", "line 3"),
            ("WARNING", "line 6"),
            ("ERROR", "line 7"),
        ]
