"""call-webhook against a real HTTP(S) server on 127.0.0.1: per row, per batch, idempotency keys,
redirects, timeouts, TLS verification, and through a compiled cluster with a secret header."""

from __future__ import annotations

import dagster as dg
import httpx
import polars as pl
import pytest

from exo_dagster import StoredTable, compile_cluster, parse_cluster
from satellites.notify._http import HttpStatusError
from satellites.notify.call_webhook import CallWebhookConfig, call_webhook
from tests.loopback import certificates, http_server, step_context


def _config(**kwargs) -> CallWebhookConfig:
    return CallWebhookConfig.model_validate(kwargs)


def _run(tmp_path, config: CallWebhookConfig, run_id: str = "run-1", **ctx):
    context = step_context(
        tmp_path, config=config.model_dump(mode="json"), satellite_id="satellite/exospherehost/call-webhook", **ctx
    )
    context.run_id = run_id
    return call_webhook(context, config), context


def test_per_row_posts_each_row_with_its_idempotency_key_and_skips_done_rows_on_rerun(tmp_path):
    rows = [{"id": 1, "text": "alpha"}, {"id": 2, "text": "beta"}, {"id": 3, "text": "gamma"}]
    with http_server() as server:
        config = _config(url=f"{server.url}/hook", headers={"X-Team": "data"})
        out, ctx = _run(tmp_path, config, rows=rows)
        got = server.to("/hook")
        assert sorted(r.json()["id"] for r in got) == [1, 2, 3]
        assert {r.json()["text"] for r in got} == {"alpha", "beta", "gamma"}
        assert all(r.headers["X-Team"] == "data" and r.method == "POST" for r in got)
        keys = {r.json()["id"]: r.headers["Idempotency-Key"] for r in got}
        assert out.select("id", "_row_key").rows() == [(i, keys[i]) for i in (1, 2, 3)]
        assert out["status"].to_list() == [200, 200, 200] and out["_error"].null_count() == 3
        assert ctx.metadata["exo/rows_computed"] == 3
        again, ctx2 = _run(tmp_path, config, rows=rows)  # the row cache: nothing is sent twice
        assert len(server.to("/hook")) == 3
        assert ctx2.metadata["exo/rows_cached"] == 3 and again["status"].to_list() == [200, 200, 200]


def test_per_row_failure_lands_in_error_and_row_url_overrides(tmp_path):
    with http_server() as server:
        server.status["/bad"] = 500
        rows = [{"url": f"{server.url}/good", "n": 1}, {"url": f"{server.url}/bad", "n": 2}]
        out, _ = _run(tmp_path, _config(url=f"{server.url}/unused", mode="per-row"), rows=rows, cache=False)
        assert [r.json() for r in server.to("/good")] == [{"n": 1}]
        assert len(server.to("/bad")) == 1 and server.to("/unused") == []
        errors = out["_error"].to_list()
        assert errors[0] is None and "500" in errors[1] and "HttpStatusError" in errors[1]


def test_get_sends_the_row_as_query_parameters(tmp_path):
    with http_server() as server:
        _run(
            tmp_path,
            _config(url=f"{server.url}/lookup", method="GET"),
            rows=[{"q": "exo dagster", "page": 2}],
            cache=False,
        )
        [request] = server.to("/lookup")
        assert request.method == "GET" and request.body == b""
        assert request.path == "/lookup?q=exo+dagster&page=2"


def test_per_batch_sends_the_table_in_chunks_with_stable_keys(tmp_path):
    path = tmp_path / "in.parquet"
    pl.DataFrame({"i": list(range(250))}).write_parquet(path)
    table = StoredTable(str(path), name="numbers")
    with http_server() as server:
        config = _config(url=f"{server.url}/bulk", batch_size=100, method="PUT")
        out, _ = _run(tmp_path, config, previous=table)
        got = server.to("/bulk")
        assert [len(r.json()) for r in got] == [100, 100, 50] and {r.method for r in got} == {"PUT"}
        assert [row["i"] for r in got for row in r.json()] == list(range(250))
        assert out["rows"].to_list() == [100, 100, 50] and out["status"].to_list() == [200, 200, 200]
        first_keys = [r.headers["Idempotency-Key"] for r in got]
        assert len(set(first_keys)) == 3 and out["idempotency_key"].to_list() == first_keys
        again, ctx = _run(tmp_path, config, previous=table)  # a retry in the same run: accepted batches are not resent
        assert len(server.to("/bulk")) == 3 and again.equals(out) and ctx.metadata["exo/batches_cached"] == 3
        _run(tmp_path, config, previous=table, run_id="run-2")  # a new run sends again, with the same keys
        assert [r.headers["Idempotency-Key"] for r in server.to("/bulk")[3:]] == first_keys


def test_per_batch_fixed_body_is_sent_once_and_a_bad_status_fails_the_step(tmp_path):
    with http_server() as server:
        out, _ = _run(tmp_path, _config(url=f"{server.url}/ping", body={"event": "done"}))
        assert [r.json() for r in server.to("/ping")] == [{"event": "done"}] and out.height == 1
        server.status["/ping"] = 404
        with pytest.raises(HttpStatusError, match="404"):
            _run(tmp_path, _config(url=f"{server.url}/ping", body={"event": "again"}))
        out, _ = _run(tmp_path, _config(url=f"{server.url}/ping", body="plain text", expect=[404]))
        assert server.to("/ping")[-1].body == b"plain text" and out["status"].to_list() == [404]


def test_redirects_are_followed_only_when_allowed(tmp_path):
    with http_server() as server:
        _run(tmp_path, _config(url=f"{server.url}/redirect/final", body={"a": 1}))
        assert [r.json() for r in server.to("/final")] == [{"a": 1}]  # 307 keeps method and body
        with pytest.raises(HttpStatusError, match="307"):
            _run(tmp_path, _config(url=f"{server.url}/redirect/final", body={"a": 2}, follow_redirects=False))
        with pytest.raises(httpx.TooManyRedirects):
            _run(tmp_path, _config(url=f"{server.url}/redirect/final", body={"a": 3}, max_redirects=0))
        assert len(server.to("/final")) == 1


def test_timeout_is_enforced(tmp_path):
    with http_server() as server:
        server.delay = 1.5
        with pytest.raises(httpx.ReadTimeout):
            _run(tmp_path, _config(url=f"{server.url}/slow", body={}, timeout="200ms"))


def test_tls_is_verified_against_the_given_ca(tmp_path):
    certs = certificates(tmp_path)
    with http_server(tls=certs.server) as server:
        assert server.url.startswith("https://")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            _run(tmp_path, _config(url=f"{server.url}/secure", body={"n": 1}))
        _run(tmp_path, _config(url=f"{server.url}/secure", body={"n": 2}, ca_bundle=certs.ca_pem))
        _run(tmp_path, _config(url=f"{server.url}/secure", body={"n": 3}, verify_tls=False))
        assert [r.json()["n"] for r in server.to("/secure")] == [2, 3]


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/webhooks
  secrets:
    - TOKEN: ${{{{ env.EXO_TEST_WEBHOOK_TOKEN }}}}
  satellites:
    - name: Tickets
      uses: satellite/exospherehost/sql
      identifier: tickets
      config: {{query: "select * from (values (1, 'printer on fire'), (2, 'coffee empty')) t(id, title)"}}
    - name: Notify
      uses: satellite/exospherehost/call-webhook
      identifier: notify
      config:
        url: {url}/tickets
        headers: {{Authorization: "Bearer ${{{{ secrets.TOKEN }}}}"}}
      input:
        ticket: $${{{{ satellites.tickets.output.id }}}}
        summary: "Ticket $${{{{ satellites.tickets.output.id }}}}: $${{{{ satellites.tickets.output.title }}}}"
"""


def test_in_a_cluster_rows_come_from_templates_and_the_secret_header_is_sent_but_never_stored(tmp_path, monkeypatch):
    token = "whk-4f9a1c2e77d0b3a5"
    monkeypatch.setenv("EXO_TEST_WEBHOOK_TOKEN", token)
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    with http_server() as server:
        cluster = parse_cluster(CLUSTER.format(url=server.url), str(tmp_path / "c.yaml"))
        defs = compile_cluster(cluster)
        result = defs.resolve_job_def(cluster.job_name).execute_in_process(instance=dg.DagsterInstance.ephemeral())
        assert result.success
        got = sorted((r.json() for r in server.to("/tickets")), key=lambda b: b["ticket"])
        assert got == [
            {"ticket": 1, "summary": "Ticket 1: printer on fire"},
            {"ticket": 2, "summary": "Ticket 2: coffee empty"},
        ]
        assert {r.headers["Authorization"] for r in server.to("/tickets")} == {f"Bearer {token}"}
    stored = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__webhooks" / "notify.parquet")
    assert stored["status"].to_list() == [200, 200]
    assert token not in str(stored.to_dicts())


def test_a_dropped_connection_is_retried_with_the_same_idempotency_key(tmp_path):
    """The first connection is closed without an answer (a transport error); the row still succeeds."""
    import socket
    import threading

    import polars as pl

    from exo_dagster import StepContext
    from satellites.notify.call_webhook import CallWebhookConfig, call_webhook

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    seen: list[str] = []

    def serve():
        for n in range(2):
            conn, _ = listener.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head = data.split(b"\r\n\r\n")[0].decode()
            seen.append(
                next(
                    line.split(":", 1)[1].strip()
                    for line in head.split("\r\n")
                    if line.lower().startswith("idempotency-key")
                )
            )
            if n == 1:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ctx = StepContext(
        cluster="t/c",
        step="hook",
        run_id="r",
        input={},
        rows=pl.LazyFrame({"id": [7]}),
        tables={},
        previous=None,
        secrets={},
        base_dir=str(tmp_path),
        data_dir=str(tmp_path),
        cache_path=str(tmp_path / "cache.sqlite"),
    )
    port = listener.getsockname()[1]
    out = call_webhook(ctx, CallWebhookConfig(url=f"http://127.0.0.1:{port}/hook", mode="per-row"))
    thread.join(5)
    listener.close()
    assert out["status"].to_list() == [200] and out["_error"].to_list() == [None]
    assert len(seen) == 2 and seen[0] == seen[1]  # the retry carried the same key
