"""Text of another language inside a config or input field (SQL, HTML): how templated values are placed.

A satellite declares `embeds={"query": sql_text.SQL}`; the runtime then renders that field with the
language's own rules instead of pasting values in as raw text, so data can never become code.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from exo_dagster.sdk import templates


def _always(config: dict) -> bool:
    return True


@dataclass(frozen=True)
class EmbeddedLanguage:
    """`render(text, resolve)` renders a whole templated string; `column(expr)` escapes a per-row value;
    `applies(raw_config)` says whether the field is that language for this step (e.g. `html: true`);
    `check(text)` lists the templates that stand where no value can (errors with problem, hint, offset), so
    `exo validate` reports them at the template."""

    name: str
    render: Callable[[str, Callable[[templates.Reference], Any]], str]
    column: Callable[[pl.Expr], pl.Expr] | None = None
    applies: Callable[[dict], bool] = _always
    check: Callable[[str], list] | None = None


def _escaped_render(escape: Callable[[str], str]):
    def render(text: str, resolve) -> str:
        if not templates.has_template(text):
            return text
        return "".join(
            p if isinstance(p, str) else escape(templates.as_text(resolve(p))) for p in templates.parse(text).pieces
        )

    return render


def _replacing_column(pairs: tuple[tuple[str, str], ...]) -> Callable[[pl.Expr], pl.Expr]:
    def column(expr: pl.Expr) -> pl.Expr:
        out = expr.cast(pl.Utf8)
        for raw, escaped in pairs:
            out = out.str.replace_all(raw, escaped, literal=True)
        return out

    return column


def _replacing(pairs: tuple[tuple[str, str], ...]) -> Callable[[str], str]:
    def escape(text: str) -> str:
        for raw, escaped in pairs:
            text = text.replace(raw, escaped)
        return text

    return escape


HTML_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#x27;"))
# Slack mrkdwn: `<!channel>`, `<@U123>` and `<url|text>` links are made of these three
SLACK_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


def html_when(flag: str) -> EmbeddedLanguage:
    """HTML text, when the step's config sets `flag` (send-email's `html: true`)."""
    return EmbeddedLanguage(
        "html",
        _escaped_render(lambda v: html.escape(v, quote=True)),
        _replacing_column(HTML_ESCAPES),
        lambda config: config.get(flag) is True,
    )


def slack_when(key: str, value: str) -> EmbeddedLanguage:
    """Slack mrkdwn text, when the step's config sets `key: value` (send-alert's `format: slack`)."""
    return EmbeddedLanguage(
        "slack-mrkdwn",
        _escaped_render(slack_escape),
        _replacing_column(SLACK_ESCAPES),
        lambda config: config.get(key) == value,
    )


slack_escape = _replacing(SLACK_ESCAPES)
