"""send-alert against a real HTTP server on 127.0.0.1, in Slack, Discord and PagerDuty formats."""

from __future__ import annotations

import pytest

from satellites.notify._http import HttpStatusError
from satellites.notify.send_alert import SendAlertConfig, send_alert
from tests.loopback import http_server, step_context


def _send(tmp_path, secrets=None, rows=None, **config):
    cfg = SendAlertConfig.model_validate(config)
    ctx = step_context(
        tmp_path,
        secrets=secrets,
        rows=rows,
        config=cfg.model_dump(mode="json"),
        satellite_id="satellite/exospherehost/send-alert",
        cache=False,
    )
    return send_alert(ctx, cfg)


def test_slack_message_from_the_webhook_url_secret(tmp_path):
    with http_server() as server:
        out = _send(
            tmp_path,
            secrets={"WEBHOOK_URL": f"{server.url}/services/T0/B0/xyz"},
            format="slack",
            title="Nightly load failed",
            text="step `load` failed: disk full",
            severity="critical",
            details={"rows": 12},
        )
        [request] = server.to("/services/T0/B0/xyz")
        body = request.json()
        assert body["text"] == "Nightly load failed: step `load` failed: disk full"
        kinds = [b["type"] for b in body["blocks"]]
        assert kinds == ["header", "section", "section", "context"]
        assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "Nightly load failed"}
        assert body["blocks"][1]["text"]["text"] == "step `load` failed: disk full"
        assert body["blocks"][2]["fields"][0]["text"] == "*rows*\n12"
        assert (
            "critical" in body["blocks"][3]["elements"][0]["text"]
            and "run-1" in body["blocks"][3]["elements"][0]["text"]
        )
        assert request.headers["Idempotency-Key"] == out["idempotency_key"][0] and out["status"].to_list() == [200]


def test_discord_embed_and_204(tmp_path):
    with http_server() as server:
        server.status["/api/webhooks/1/abc"] = 204
        out = _send(
            tmp_path,
            format="discord",
            url=f"{server.url}/api/webhooks/1/abc",
            text="x" * 5000,
            title="Heads up",
            severity="warning",
            details={"cluster": "t/notify"},
        )
        body = server.to("/api/webhooks/1/abc")[0].json()
        assert len(body["content"]) == 2000 and body["content"].endswith("…")
        [embed] = body["embeds"]
        assert embed["title"] == "Heads up" and len(embed["description"]) == 4096 and embed["color"] == 0xECB22E
        assert embed["fields"] == [{"name": "cluster", "value": "t/notify", "inline": True}]
        assert body["allowed_mentions"] == {"parse": []}  # no @everyone from data
        assert out["status"].to_list() == [204]


def test_pagerduty_event_with_routing_key_secret_and_dedup_key(tmp_path):
    with http_server() as server:
        server.status["/v2/enqueue"] = 202
        out = _send(
            tmp_path,
            secrets={"ROUTING_KEY": "R0UTINGKEY123"},
            format="pagerduty",
            url=f"{server.url}/v2/enqueue",
            text="orders step failed",
            severity="critical",
            details={"step": "orders"},
        )
        body = server.to("/v2/enqueue")[0].json()
        assert body["routing_key"] == "R0UTINGKEY123" and body["event_action"] == "trigger"
        assert body["dedup_key"] == out["idempotency_key"][0]
        payload = body["payload"]
        assert payload["summary"] == "orders step failed" and payload["severity"] == "critical"
        assert payload["source"] == "cluster/t/notify" and payload["custom_details"]["step"] == "s"
        with pytest.raises(ValueError, match="ROUTING_KEY"):
            _send(tmp_path, format="pagerduty", url=f"{server.url}/v2/enqueue", text="no key")


def test_one_alert_per_row_with_row_fields(tmp_path):
    rows = [{"text": "disk 91%", "host": "a"}, {"text": "disk 97%", "host": "b", "severity": "critical"}]
    with http_server() as server:
        out = _send(tmp_path, rows=rows, format="slack", url=f"{server.url}/hook", severity="warning")
        got = sorted((r.json() for r in server.to("/hook")), key=lambda b: b["text"])
        assert [b["text"] for b in got] == ["disk 91%", "disk 97%"]
        assert got[0]["blocks"][1]["fields"][0]["text"] == "*host*\na"
        assert "critical" in got[1]["blocks"][-1]["elements"][0]["text"]
        assert out["status"].to_list() == [200, 200] and out["_error"].null_count() == 2


def test_missing_url_and_bad_status_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="WEBHOOK_URL"):
        _send(tmp_path, format="slack", text="hi")
    with http_server() as server:
        server.status["/hook"] = 403
        with pytest.raises(HttpStatusError, match="403"):
            _send(tmp_path, format="discord", url=f"{server.url}/hook", text="hi")


SLACK_CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/alert
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {query: "select '<!channel> <https://evil.example|click> & more' as title"}
    - name: Alert
      uses: satellite/exospherehost/send-alert
      identifier: alert
      config: {format: slack, url: "URL/hook", text: "Failed: ${{ satellites.rows.output.title }} (see <https://ok.example|runbook>)"}
"""


def test_slack_text_escapes_templated_values_not_the_template(tmp_path, monkeypatch):
    import dagster as dg

    from exo_dagster import compile_cluster, parse_cluster

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    with http_server() as server:
        cluster = parse_cluster(SLACK_CLUSTER.replace("URL", server.url), str(tmp_path / "c.yaml"))
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        )
        assert result.success
        [request] = server.to("/hook")
    text = request.json()["blocks"][0]["text"]["text"]
    assert (
        text
        == "Failed: &lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more (see <https://ok.example|runbook>)"
    )
