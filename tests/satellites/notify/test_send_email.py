"""send-email against a real SMTP server (aiosmtpd) on 127.0.0.1: plain, STARTTLS with login, implicit TLS."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from satellites.notify.send_email import SendEmailConfig, send_email
from tests.loopback import certificates, smtp_server, step_context


def _send(tmp_path, secrets=None, rows=None, **config):
    cfg = SendEmailConfig.model_validate(config)
    ctx = step_context(
        tmp_path,
        secrets=secrets,
        rows=rows,
        config=cfg.model_dump(mode="json", by_alias=True),
        satellite_id="satellite/exospherehost/send-email",
        cache=False,
    )
    return send_email(ctx, cfg)


def test_plain_smtp_one_message(tmp_path):
    with smtp_server() as server:
        out = _send(
            tmp_path,
            host="127.0.0.1",
            port=server.port,
            security="none",
            **{"from": "exo@example.org"},
            to="ops@example.org",
            cc=["lead@example.org"],
            bcc=["audit@example.org"],
            subject="Report ready",
            body="Rows: 42",
        )
        [(sender, rcpts, msg)] = server.messages
        assert sender == "exo@example.org"
        assert sorted(rcpts) == ["audit@example.org", "lead@example.org", "ops@example.org"]
        assert msg["To"] == "ops@example.org" and msg["Cc"] == "lead@example.org" and msg["Bcc"] is None
        assert msg["Subject"] == "Report ready" and msg.get_content().strip() == "Rows: 42"
        assert msg["Message-ID"] == out["message_id"][0] == f"<{out['idempotency_key'][0]}@exo-dagster>"
        assert msg["X-Exo-Run-Id"] == "run-1"


def test_starttls_with_login_and_certificate_checks(tmp_path):
    certs = certificates(tmp_path)
    with smtp_server(tls=certs.server, user="exo", password="s3cret-pass") as server:
        base = dict(
            host="127.0.0.1",
            port=server.port,
            security="starttls",
            username="exo",
            **{"from": "exo@example.org"},
            to=["ops@example.org"],
            subject="Hi",
            body="<b>bold</b>",
            html=True,
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            _send(tmp_path, secrets={"PASSWORD": "s3cret-pass"}, **base)  # the test CA is not trusted by default
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _send(tmp_path, secrets={"PASSWORD": "wrong"}, ca_bundle=certs.ca_pem, **base)
        _send(tmp_path, secrets={"PASSWORD": "s3cret-pass"}, ca_bundle=certs.ca_pem, **base)
        assert [ok for _, _, ok in server.logins] == [False, True]
        [(_, _, msg)] = server.messages
        assert msg.get_body(preferencelist=("html",)).get_content().strip() == "<b>bold</b>"
        with pytest.raises(ValueError, match="PASSWORD"):
            _send(tmp_path, ca_bundle=certs.ca_pem, **base)


def test_implicit_tls_and_no_verification_when_turned_off(tmp_path):
    certs = certificates(tmp_path)
    with smtp_server(tls=certs.server, implicit_tls=True) as server:
        _send(
            tmp_path,
            host="127.0.0.1",
            port=server.port,
            security="ssl",
            verify_tls=False,
            **{"from": "exo@example.org"},
            to="ops@example.org",
            subject="tls",
            body="over TLS",
        )
        assert server.messages[0][2]["Subject"] == "tls"


def test_one_message_per_row(tmp_path):
    rows = [
        {"to": "a@example.org", "subject": "For A", "body": "hello A"},
        {"to": "b@example.org", "subject": "For B", "body": "hello B"},
    ]
    with smtp_server() as server:
        out = _send(
            tmp_path,
            rows=rows,
            host="127.0.0.1",
            port=server.port,
            security="none",
            **{"from": "exo@example.org"},
            subject="default",
        )
        got = sorted(
            (rcpts[0], msg["Subject"], msg.get_content().strip(), msg["Message-ID"])
            for _, rcpts, msg in server.messages
        )
        assert [g[:3] for g in got] == [("a@example.org", "For A", "hello A"), ("b@example.org", "For B", "hello B")]
        assert {g[3] for g in got} == {f"<{k}@exo-dagster>" for k in out["_row_key"].to_list()}


def test_no_recipient_is_a_clear_error(tmp_path):
    with smtp_server() as server:
        with pytest.raises(ValueError, match="no recipient"):
            _send(tmp_path, host="127.0.0.1", port=server.port, security="none", **{"from": "exo@example.org"})


HTML_CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/mail
  satellites:
    - name: People
      uses: satellite/exospherehost/sql
      identifier: people
      config:
        query: "select * from (values ('<script>alert(1)</script>', 'a@example.org'),
          ('Tom & \\"Jerry\\"', 'b@example.org')) t(name, email)"
    - name: Mail
      uses: satellite/exospherehost/send-email
      identifier: mail
      config: {host: 127.0.0.1, port: PORT, security: none, from: exo@example.org, html: true, mode: per-row}
      input:
        to: $${{ satellites.people.output.email }}
        body: "<p>Hello <b>$${{ satellites.people.output.name }}</b></p>"
"""


def test_html_bodies_escape_templated_values(tmp_path, monkeypatch):
    import dagster as dg

    from exo_dagster import compile_cluster, parse_cluster

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    with smtp_server() as server:
        cluster = parse_cluster(HTML_CLUSTER.replace("PORT", str(server.port)), str(tmp_path / "c.yaml"))
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        )
        assert result.success
        bodies = sorted(m.get_body(preferencelist=("html",)).get_content().strip() for _, _, m in server.messages)
    assert bodies == [
        "<p>Hello <b>&lt;script&gt;alert(1)&lt;/script&gt;</b></p>",
        "<p>Hello <b>Tom &amp; &quot;Jerry&quot;</b></p>",
    ]
