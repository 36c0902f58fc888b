"""satellite/exospherehost/send-alert: an alert to Slack, Discord or PagerDuty.

The webhook URL is a secret in practice (Slack and Discord put the token in it): give it as the
satellite's secret `WEBHOOK_URL` (or `url:` in the config); PagerDuty takes its routing key from the
secret `ROUTING_KEY` and posts to the Events API v2 (`url:` overrides it). Per batch (the default)
sends one alert; per row (`$${{ }}` input) one per row, where a row's `text`, `title`, `severity`
or `details` override the config.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import polars as pl
from pydantic import Field

from exo_dagster.sdk import StepContext, satellite
from exo_dagster.sdk import embedded_languages as embedding
from satellites.notify._http import (
    HttpConfig,
    Mode,
    check,
    client,
    map_each_row,
    per_row,
    plain,
    response_text,
    send_once,
)

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY_COLOR = {"critical": 0x8B0000, "error": 0xE01E5A, "warning": 0xECB22E, "info": 0x2EB67D}
ROW_KEYS = ("text", "title", "severity", "details")
DISCORD_LIMIT, PAGERDUTY_SUMMARY_LIMIT, SLACK_SECTION_LIMIT = 4096, 1024, 3000


class SendAlertConfig(HttpConfig):
    format: Literal["slack", "discord", "pagerduty"] = Field(
        description="The service: Slack (blocks), Discord (an embed, no mentions) or PagerDuty (Events API v2; "
        "routing key from the secret ROUTING_KEY)."
    )
    text: str = Field("", description="The alert's message (PagerDuty: its summary); a row's `text` overrides it.")
    title: str | None = Field(None, description="The alert's title (a row's `title` overrides it).")
    severity: Literal["critical", "error", "warning", "info"] = Field(
        "error", description="The alert's severity (a row's `severity` overrides it)."
    )
    details: dict[str, Any] = Field(
        default_factory=dict, description="Extra fields shown with the alert (per row, other columns are added)."
    )
    url: str | None = Field(
        None,
        description="The webhook URL; default: the secret WEBHOOK_URL (Slack, Discord), or PagerDuty's Events API.",
    )
    source: str | None = Field(None, description="PagerDuty: the event's source; default: the cluster.")
    event_action: Literal["trigger", "acknowledge", "resolve"] = Field(
        "trigger", description="PagerDuty: open (trigger), acknowledge or resolve the incident."
    )
    dedup_key: str | None = Field(
        None, description="PagerDuty: the dedup key that ties events to one incident; default: the idempotency key."
    )
    mode: Mode = Field(
        "auto",
        description="per-batch: one alert; per-row: one alert per input row; auto: per row when the step "
        "has per-row (`$${{ }}`) input.",
    )
    concurrency: int | None = Field(
        None, ge=1, le=64, description="Per row: alerts in flight at once (1 to 64); default: the step's `concurrency`."
    )


def _text(value) -> str:
    """A detail value as readable text: lists one item per line, mappings as JSON."""
    if isinstance(value, (list, tuple)):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def payload(ctx: StepContext, config: SendAlertConfig, alert: dict, key: str) -> dict:
    """The JSON body in the chosen service's format."""
    text, title, severity, details = alert["text"], alert["title"], alert["severity"], plain(alert["details"])
    if config.format == "slack":
        blocks: list[dict] = []
        if title:
            blocks.append({"type": "header", "text": {"type": "plain_text", "text": _cut(title, 150)}})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(text or " ", SLACK_SECTION_LIMIT)}})
        if details:
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {
                            "type": "mrkdwn",
                            "text": _cut(
                                f"*{embedding.slack_escape(str(k))}*\n{embedding.slack_escape(_text(v))}", 2000
                            ),
                        }
                        for k, v in list(details.items())[:10]
                    ],
                }
            )
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"{severity} · cluster/{ctx.cluster} · run {ctx.run_id}"}],
            }
        )
        return {"text": f"{title}: {text}" if title else text, "blocks": blocks}
    if config.format == "discord":
        embed = {
            "title": _cut(title or f"{severity}: cluster/{ctx.cluster}", 256),
            "description": _cut(text, DISCORD_LIMIT),
            "color": SEVERITY_COLOR[severity],
            "fields": [
                {"name": _cut(str(k), 256), "value": _cut(_text(v), 1024), "inline": True}
                for k, v in list(details.items())[:25]
            ],
            "footer": {"text": f"cluster/{ctx.cluster} · run {ctx.run_id}"},
        }
        return {"content": _cut(text, 2000), "embeds": [embed], "allowed_mentions": {"parse": []}}
    routing_key = ctx.secrets.get("ROUTING_KEY")
    if not routing_key:
        raise ValueError(
            "send-alert `format: pagerduty` needs the secret ROUTING_KEY: add "
            '`secrets: [{ROUTING_KEY: "${{ secrets.PAGERDUTY_ROUTING_KEY }}"}]` to its config'
        )
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": config.event_action,
        "dedup_key": config.dedup_key or key,
        "client": "exo-dagster",
    }
    if config.event_action == "trigger":
        summary = f"{title}: {text}" if title else text
        body["payload"] = {
            "summary": _cut(summary or f"alert from cluster/{ctx.cluster}", PAGERDUTY_SUMMARY_LIMIT),
            "source": config.source or f"cluster/{ctx.cluster}",
            "severity": severity,
            "custom_details": {**details, "run_id": ctx.run_id, "step": ctx.step},
        }
    return body


def _url(ctx: StepContext, config: SendAlertConfig) -> str:
    url = config.url or ctx.secrets.get("WEBHOOK_URL") or (PAGERDUTY_URL if config.format == "pagerduty" else None)
    if not url:
        raise ValueError(
            f"send-alert `format: {config.format}` needs a webhook URL: add "
            '`secrets: [{WEBHOOK_URL: "${{ secrets.SLACK_WEBHOOK_URL }}"}]` to its config (or `url:`)'
        )
    return url


def _alert(config: SendAlertConfig, row: dict | None = None) -> dict:
    row = row or {}
    return {
        "text": str(row.get("text") or config.text),
        "title": row.get("title") or config.title,
        "severity": row.get("severity") or config.severity,
        "details": {
            **config.details,
            **(row.get("details") or {}),
            **{k: v for k, v in row.items() if k not in ROW_KEYS},
        },
    }


@satellite(
    "satellite/exospherehost/send-alert",
    config=SendAlertConfig,
    inputs={
        "text": "per row: the message",
        "title": "per row: the title",
        "severity": "per row: the severity",
        "*": "per row: other columns become alert details",
    },
    outputs={
        "status": "HTTP status",
        "response": "the service's answer",
        "idempotency_key": "key sent (PagerDuty dedup key)",
    },
    kinds=("http",),
    overrides=ROW_KEYS,  # a row's text/title/severity/details replace the config's
    embeds={"text": embedding.slack_when("format", "slack")},  # Slack: templated values cannot add mentions or links
)
def send_alert(ctx: StepContext, config: SendAlertConfig) -> pl.DataFrame:
    """Posts an alert to Slack or Discord (incoming webhooks) or PagerDuty (Events API v2), once or per row.
    Retries and re-executions do not alert twice (one alert per run or partition; per row, one per row, from the row
    cache); a crash right after a delivery resends it once, with the same idempotency key (PagerDuty: dedup key)."""
    url = _url(ctx, config)
    with client(ctx, config) as http:

        def post(alert: dict, key: str) -> dict:
            headers = {config.idempotency_header: key} if config.idempotency_header else {}
            response = http.post(url, json=payload(ctx, config, alert, key), headers=headers)
            check(response)
            return {"status": response.status_code, "response": response_text(response)}

        if per_row(ctx, config.mode):
            return map_each_row(
                ctx,
                "send-alert",
                "{text: $${{ satellites.X.output.message }}}",
                lambda row, key: post(_alert(config, row), key),
                config.concurrency,
            )
        out, table = send_once(ctx, _alert(config), post, {"status": pl.Int64, "response": pl.Utf8})
        ctx.log.info(f"send-alert: {config.format} alert sent ({out['status']})")
        return table
