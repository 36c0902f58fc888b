"""Templated values inside SQL become literals, never SQL text.

A value lands where the query puts it: inside a '...' string its quotes are doubled (backslashes
too in an E'...' string), inside a "..." identifier its double quotes are doubled; anywhere else it
becomes a typed literal: a number, TRUE/FALSE, NULL, a quoted string, a comma-separated list of
literals (for `in (...)`), a quoted view name for a whole table. In a comment a value is dropped;
inside a $$-quoted string a value is refused (no quoting can make it safe there).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from typing import Any, Callable

from exo_dagster.sdk import templates
from exo_dagster.sdk.embedding import Embedding
from exo_dagster.sdk.table import StoredTable


class SqlTemplateError(ValueError):
    """A template sits where no value can be placed safely."""


CODE, STRING, ESTRING, IDENT, LINE_COMMENT, BLOCK_COMMENT, DOLLAR = range(7)


def render(text: str, resolve: Callable[[templates.Reference], Any]) -> str:
    """The query with every `${{ }}` replaced by a literal that fits where it stands."""
    if not templates.has_template(text):
        return text
    lexer = _Lexer()
    out: list[str] = []
    for piece in templates.parse(text).pieces:
        if isinstance(piece, str):
            lexer.feed(piece)
            out.append(piece)
        else:
            out.append(lexer.place(resolve(piece), piece.text))
    return "".join(out)


def quote_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A typed SQL literal for one value (lists become `a, b, c` for `in (...)`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'::DOUBLE"
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else f"'{value}'::DOUBLE"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP{'TZ' if value.tzinfo else ''} {quote_string(value.isoformat(sep=' '))}"
    if isinstance(value, dt.date):
        return f"DATE {quote_string(value.isoformat())}"
    if isinstance(value, dt.time):
        return f"TIME {quote_string(value.isoformat())}"
    if isinstance(value, StoredTable):
        return quote_identifier(value.name) if value.name else value.duckdb_source()
    if isinstance(value, (list, tuple)):
        return ", ".join(literal(v) for v in value) if value else "NULL"
    if isinstance(value, dict):
        return quote_string(json.dumps(value, default=str))
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{b:02x}" for b in value) + "'::BLOB"
    return quote_string(str(value))


def _text(value: Any) -> str:
    if isinstance(value, StoredTable):
        return value.name or str(value)
    return templates.as_text(value)


class _Lexer:
    """Just enough of DuckDB's lexical rules to know whether a position is code, a string, an
    identifier or a comment."""

    def __init__(self) -> None:
        self.state = CODE
        self.tag = ""
        self.depth = 0
        self.prev = ""  # the last character seen in CODE (E'...' detection)

    def place(self, value: Any, where: str) -> str:
        if self.state == CODE:
            return literal(value)
        if self.state == STRING:
            return _text(value).replace("'", "''")
        if self.state == ESTRING:
            return _text(value).replace("\\", "\\\\").replace("'", "''")
        if self.state == IDENT:
            return _text(value).replace('"', '""')
        if self.state in (LINE_COMMENT, BLOCK_COMMENT):
            return ""
        raise SqlTemplateError(f"`{where}` is inside a $-quoted string, where a value cannot be quoted safely; "
                               f"use a '...' string or put the template outside quotes")

    def feed(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            nxt = text[i + 1] if i + 1 < n else ""
            if self.state == CODE:
                if c == "'":
                    self.state = ESTRING if self.prev in ("e", "E") and self._e_prefix(text, i) else STRING
                elif c == '"':
                    self.state = IDENT
                elif c == "-" and nxt == "-":
                    self.state, i = LINE_COMMENT, i + 1
                elif c == "/" and nxt == "*":
                    self.state, self.depth, i = BLOCK_COMMENT, 1, i + 1
                elif c == "$":
                    tag = self._dollar_tag(text, i)
                    if tag is not None:
                        self.state, self.tag, i = DOLLAR, tag, i + len(tag) - 1
                self.prev = c
            elif self.state in (STRING, ESTRING):
                if self.state == ESTRING and c == "\\":
                    i += 1
                elif c == "'":
                    if nxt == "'":
                        i += 1
                    else:
                        self.state, self.prev = CODE, c
            elif self.state == IDENT:
                if c == '"':
                    if nxt == '"':
                        i += 1
                    else:
                        self.state, self.prev = CODE, c
            elif self.state == LINE_COMMENT:
                if c in "\r\n":
                    self.state, self.prev = CODE, c
            elif self.state == BLOCK_COMMENT:
                if c == "/" and nxt == "*":
                    self.depth, i = self.depth + 1, i + 1
                elif c == "*" and nxt == "/":
                    self.depth, i = self.depth - 1, i + 1
                    if self.depth == 0:
                        self.state, self.prev = CODE, " "
            elif self.state == DOLLAR:
                if text.startswith(self.tag, i):
                    self.state, self.prev, i = CODE, "$", i + len(self.tag) - 1
            i += 1

    def _e_prefix(self, text: str, i: int) -> bool:
        """`E'` starts an escape string only when the E is not the end of a longer word."""
        before = text[i - 2] if i >= 2 else ""
        return not (before.isalnum() or before == "_")

    @staticmethod
    def _dollar_tag(text: str, i: int) -> str | None:
        """`$$` or `$tag$` opens a dollar-quoted string (`$1` is a parameter, not a string)."""
        j = i + 1
        while j < len(text) and (text[j].isalnum() or text[j] == "_"):
            j += 1
        if j < len(text) and text[j] == "$" and (j == i + 1 or not text[i + 1].isdigit()):
            return text[i:j + 1]
        return None


SQL = Embedding("sql", render)


def sql_name(text: str) -> str:
    """A name as the DuckDB catalog spells it (`orders-report` -> `orders_report`): letters, digits, underscores."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)
