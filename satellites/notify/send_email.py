"""satellite/exospherehost/send-email: mail over SMTP, with STARTTLS or implicit TLS and login.

The password comes from the satellite's secret `PASSWORD` (`secrets: [{PASSWORD: "${{ secrets.SMTP_PASSWORD }}"}]`),
the login name from `username`. One message per batch by default; per row (`$${{ }}` input) one
message per row, where a row's `to`, `cc`, `subject` or `body` override the config. Every message
carries a Message-ID made from its idempotency key, so a receiving system can drop a re-sent copy.
All messages of a step go over one SMTP connection (standard library smtplib; no extra dependency).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

import polars as pl
from pydantic import Field, field_validator

from exo_dagster.sdk import SatelliteConfig, StepContext, duration_seconds, satellite
from exo_dagster.sdk import embedded_languages as embedding
from exo_dagster.sdk.tls import tls_context as _tls_context
from satellites.notify._http import Mode, map_each_row, per_row, send_once

DEFAULT_PORT = {"starttls": 587, "ssl": 465, "none": 25}
ROW_KEYS = ("to", "cc", "bcc", "subject", "body")


class SendEmailConfig(SatelliteConfig):
    host: str = Field(description="The SMTP server's host name.")
    port: int | None = Field(
        None, ge=1, le=65535, description="The SMTP port; default: 587 for starttls, 465 for ssl, 25 for none."
    )
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls: upgrade a plain connection; ssl: implicit TLS; none: no encryption."
    )
    verify_tls: bool = Field(
        True, description="Check the server's TLS certificate; false only for a test server you trust."
    )
    ca_bundle: str | None = Field(
        None, description="A PEM file of extra CA certificates to trust (relative to the cluster file's folder)."
    )
    username: str | None = Field(
        None, description="The login name; the password is the step's secret PASSWORD (no login without both)."
    )
    from_: str = Field(description="The sender address (YAML key `from`).")
    to: list[str] = Field(
        default_factory=list, description="Recipient address(es), one or a list; a row's `to` overrides it."
    )
    cc: list[str] = Field(
        default_factory=list, description="Copy address(es), one or a list; a row's `cc` overrides it."
    )
    bcc: list[str] = Field(
        default_factory=list, description="Blind-copy address(es), one or a list; a row's `bcc` overrides it."
    )
    reply_to: str | None = Field(None, description="The Reply-To address.")
    subject: str = Field("", description="The subject (a row's `subject` overrides it).")
    body: str = Field("", description="The message body (a row's `body` overrides it).")
    html: bool = Field(
        False, description="The body is HTML (templated values are escaped; a plain-text part is added)."
    )
    mode: Mode = Field(
        "auto",
        description="per-batch: one message; per-row: one message per input row; auto: per row when the "
        "step has per-row (`$${{ }}`) input.",
    )
    timeout: float | str = Field(
        30.0, description="How long to wait on the SMTP server: seconds, or a duration such as `10s` or `2m`."
    )

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def tls_context(ctx: StepContext, config: SendEmailConfig) -> ssl.SSLContext:
    return _tls_context(ctx.path(config.ca_bundle) if config.ca_bundle else None, verify=config.verify_tls)


def connect(ctx: StepContext, config: SendEmailConfig) -> smtplib.SMTP:
    port = config.port or DEFAULT_PORT[config.security]
    timeout = duration_seconds(config.timeout)
    if config.security == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.host, port, timeout=timeout, context=tls_context(ctx, config))
    else:
        smtp = smtplib.SMTP(config.host, port, timeout=timeout)
        if config.security == "starttls":
            smtp.starttls(context=tls_context(ctx, config))
    password = ctx.secrets.get("PASSWORD")
    if config.username or password:
        if not (config.username and password):
            smtp.quit()
            raise ValueError("send-email login needs both `username:` and the secret PASSWORD")
        smtp.login(config.username, password)
    return smtp


def message(ctx: StepContext, config: SendEmailConfig, fields: dict, key: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = config.from_
    msg["To"] = ", ".join(fields["to"])
    if fields["cc"]:
        msg["Cc"] = ", ".join(fields["cc"])
    if config.reply_to:
        msg["Reply-To"] = config.reply_to
    msg["Subject"] = fields["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{key}@exo-dagster>"
    msg["X-Exo-Cluster"] = ctx.cluster
    msg["X-Exo-Run-Id"] = ctx.run_id
    if config.html:
        msg.set_content("This message is HTML; open it in a client that shows HTML.")
        msg.add_alternative(fields["body"], subtype="html")
    else:
        msg.set_content(fields["body"])
    return msg


def _fields(config: SendEmailConfig, row: dict | None = None) -> dict:
    row = row or {}

    def many(name: str) -> list[str]:
        value = row.get(name)
        if value is None:
            return list(getattr(config, name))
        return [value] if isinstance(value, str) else [str(v) for v in value]

    fields = {
        "to": many("to"),
        "cc": many("cc"),
        "bcc": many("bcc"),
        "subject": str(row.get("subject") if row.get("subject") is not None else config.subject),
        "body": str(row.get("body") if row.get("body") is not None else config.body),
    }
    if not (fields["to"] or fields["cc"] or fields["bcc"]):
        raise ValueError("send-email has no recipient: set `to:` in the config or a per-row `to` input")
    return fields


@satellite(
    "satellite/exospherehost/send-email",
    config=SendEmailConfig,
    inputs={"to": "per row: recipient(s)", "subject": "per row: subject", "body": "per row: body"},
    outputs={"to": "recipients", "message_id": "Message-ID sent", "idempotency_key": "key the Message-ID is made from"},
    kinds=("email",),
    overrides=ROW_KEYS,  # a row's to/cc/bcc/subject/body replace the config's
    embeds={"body": embedding.html_when("html")},  # with `html: true`, templated values are escaped HTML text
)
def send_email(ctx: StepContext, config: SendEmailConfig) -> pl.DataFrame:
    """Sends email over SMTP (STARTTLS or TLS, with login), one message per batch or per row.
    Retries and re-executions do not send twice (one message per run or partition; per row, one per row, from the row
    cache). SMTP has no idempotency key: a crash right after the server accepted a message sends it once more, with
    the same Message-ID for the receiving side to drop."""
    smtp = connect(ctx, config)
    try:

        def send(fields: dict, key: str) -> dict:
            msg = message(ctx, config, fields, key)
            refused = smtp.send_message(msg, to_addrs=fields["to"] + fields["cc"] + fields["bcc"])
            if refused:
                raise RuntimeError(f"recipients refused: {', '.join(sorted(refused))}")
            return {"to": ", ".join(fields["to"]), "message_id": msg["Message-ID"]}

        if per_row(ctx, config.mode):
            # one SMTP connection is one conversation: rows go through it one at a time
            return map_each_row(
                ctx,
                "send-email",
                "{to: $${{ satellites.X.output.email }}}",
                lambda row, key: send(_fields(config, row), key),
                1,
            )
        out, table = send_once(ctx, _fields(config), send, {"to": pl.Utf8, "message_id": pl.Utf8})
        ctx.log.info(f"send-email: sent to {out['to']}")
        return table
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
