"""No secret reaches storage: real runs whose satellites leak a secret in many ways, then every byte the
runs left (DAGSTER_HOME, data folder, row cache, catalog, outputs, compute logs, stdout/stderr) is scanned."""

from __future__ import annotations

import base64
import json
import logging
import sys
import urllib.parse
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

SECRET = 'sk-live/Zq9x+Ab"cd\\ef 0123456789-ABCDEFghij'


def needles(secret: str) -> dict[str, bytes]:
    """The secret and its encodings, computed here (not with the masker under test), plus its 12-char fragments."""
    raw = secret.encode()
    found = {
        "raw": raw,
        "url": urllib.parse.quote(secret, safe="").encode(),
        "url-plus": urllib.parse.quote_plus(secret).encode(),
        "json": json.dumps(secret)[1:-1].encode(),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64-basic": base64.b64encode(b"user:" + raw)[8:-8],  # the secret's part of a Basic auth header
        "hex": raw.hex().encode(),
    }
    found.update({f"fragment@{i}": raw[i : i + 12] for i in range(0, len(raw) - 12, 3)})
    return found


def scan(roots: list[Path], extra: dict[str, str]) -> dict[str, list[str]]:
    """Hits per store: every file's bytes, plus the decoded cells of every Parquet file (compressed on disk)."""
    wanted = needles(SECRET)
    hits: dict[str, list[str]] = {}
    blobs: list[tuple[str, str, bytes]] = [(name, name, text.encode()) for name, text in extra.items()]
    for root in roots:
        for file in root.rglob("*"):
            if not file.is_file():
                continue
            store = _store(file)
            blobs.append((store, str(file), file.read_bytes()))
            if file.suffix == ".parquet":
                blobs.append((store, f"{file} (cells)", pl.read_parquet(file).write_csv().encode()))
    for store, where, data in blobs:
        hits.setdefault(store, [])
        for name, needle in wanted.items():
            if needle in data:
                hits[store].append(f"{where}: {name}")
    return hits


def _store(file: Path) -> str:
    parts = file.parts
    for name in ("compute_logs", "cache", "outputs", "history", "schedules", "storage"):
        if name in parts:
            return name
    return "catalog" if file.name.startswith("catalog.duckdb") else file.name


class LeakyConfig(SatelliteConfig):
    count: int = 1
    fail: bool = False


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/leaky", config=LeakyConfig, registry=extra)
    def leaky(ctx: StepContext, config: LeakyConfig):
        token = ctx.secrets["TOKEN"]
        print(f"debug: token={token}")  # 1. print
        sys.stderr.write(f"stderr: {token[:5]}")  #    split over writes
        sys.stderr.write(f"{token[5:]}\n")
        logging.getLogger("leaky").warning("calling the API with %s", token)  # 2. Python logging
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            logging.getLogger("leaky").exception("traceback with the secret")
        basic = base64.b64encode(f"user:{token}".encode()).decode()
        ctx.log.info(f"Authorization: Basic {basic}")  # 3. base64 in a log line
        url = "https://api.example.org/v1?key=" + urllib.parse.quote(token, safe="")
        if config.fail:
            raise RuntimeError(f"GET {url} -> 401")  # 4. URL-encoded in an error
        rows = ctx.map_rows(
            lambda row, key: {"echo": json.dumps({"token": token}), "basic": basic, "url": url},
            pl.DataFrame({"i": list(range(config.count))}),
        )  # 5. JSON/base64/URL in row cache
        return rows.drop("_row_key")

    return builtin_registry().merged(extra)


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/leaks
  secrets:
    - TOKEN: ${{ env.EXO_LEAK_TOKEN }}
  satellites:
    - name: Leak
      uses: satellite/test/leaky
      identifier: leak
      config:
        count: 2
        fail: FAIL
        secrets:
          - TOKEN: ${{ secrets.TOKEN }}
    - name: Echo
      uses: satellite/exospherehost/call-webhook
      identifier: echo
      config:
        url: URL/echo
        mode: per-row
        headers: {Authorization: "Bearer ${{ secrets.TOKEN }}"}
      input:
        i: $${{ satellites.leak.output.basic }}
"""

BAD_CONFIG = """\
version: 0.0.1b
cluster:
  identifier: test/leaks-config
  secrets:
    - TOKEN: ${{ env.EXO_LEAK_TOKEN }}
  satellites:
    - name: Leak
      uses: satellite/test/leaky
      identifier: leak
      config:
        count: ${{ secrets.TOKEN }}
        secrets:
          - TOKEN: ${{ secrets.TOKEN }}
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXO_LEAK_TOKEN", SECRET)
    monkeypatch.delenv("EXO_CACHE_DIR", raising=False)
    monkeypatch.delenv("EXO_CATALOG", raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path


def _execute(text: str, tmp_path: Path, instance: dg.DagsterInstance) -> tuple[bool, str]:
    cluster = parse_cluster(text, str(tmp_path / "c.yaml"), registry=_registry())
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    errors = "\n".join(
        str(e.event_specific_data.error.to_string())
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    )
    return result.success, errors


METADATA = (
    "metadataEntries { label __typename ... on TextMetadataEntry { text } "
    "... on JsonMetadataEntry { jsonString } ... on MarkdownMetadataEntry { mdStr } }"
)
GRAPHQL = """query($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { __typename
    ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message stack causes { message stack } } failureMetadata { METADATA } }
    ... on MaterializationEvent { METADATA } } } }
  runsOrError { ... on Runs { results { runId status runConfigYaml tags { key value } } } }
}""".replace("METADATA", METADATA)


def _graphql(instance: dg.DagsterInstance, run_ids: list[str]) -> str:
    """What the UI's GraphQL API answers about the runs: every log message, error, metadata entry, tag."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster_graphql.test.utils import execute_dagster_graphql

    answers = []
    with WorkspaceProcessContext(instance, None) as process:
        context = process.create_request_context()
        for run_id in run_ids:
            result = execute_dagster_graphql(context, GRAPHQL, {"runId": run_id})
            assert not result.errors and result.data["logsForRun"]["events"]
            answers.append(json.dumps(result.data))
    text = "\n".join(answers)
    assert "********" in text  # the masked leaks are there: the answers do carry the messages
    return text


def test_no_secret_reaches_any_store(home, capfd):
    tmp_path = home
    with http_server() as server, dg.DagsterInstance.get() as instance:
        ok, _ = _execute(CLUSTER.replace("URL", server.url).replace("FAIL", "false"), tmp_path, instance)
        assert ok
        # the echo server really received the secret, and answered with it (JSON-escaped)
        [first, *_] = server.to("/echo")
        assert first.headers["Authorization"] == f"Bearer {SECRET}"
        failed, error = _execute(CLUSTER.replace("URL", server.url).replace("FAIL", "true"), tmp_path, instance)
        assert not failed and "RuntimeError: GET https://api.example.org/v1?key=********" in error
        bad, config_error = _execute(BAD_CONFIG, tmp_path, instance)
        assert not bad and "count" in config_error and "from a secret, not shown" in config_error
        runs = instance.get_runs()
        assert len(runs) == 3
        entries = [entry for run in runs for entry in instance.all_logs(run.run_id)]
        assert sum(e.dagster_event_type == dg.DagsterEventType.STEP_FAILURE for e in entries) == 2
        logs = "".join(entry.to_json() for entry in entries)
        answers = _graphql(instance, [run.run_id for run in runs])
    out = capfd.readouterr()
    outputs = tmp_path / "data" / "outputs" / "test__leaks"
    echoed = pl.read_parquet(outputs / "echo.parquet")
    assert echoed.height == 2 and "********" in echoed["response"][0]  # it did leak, and was masked
    assert (tmp_path / "data" / "cache" / "test__leaks.sqlite").exists()
    assert "debug: token=********" in out.out and "stderr: ********" in out.err
    hits = scan(
        [tmp_path / "home", tmp_path / "data"],
        {"stdout": out.out, "stderr": out.err, "event log": logs, "errors": error + config_error, "graphql": answers},
    )
    assert {
        "compute_logs",
        "cache",
        "outputs",
        "stdout",
        "stderr",
        "catalog",
        "history",
        "event log",
        "graphql",
    } <= set(hits)
    assert {store: found for store, found in hits.items() if found} == {}
