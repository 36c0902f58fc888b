"""Templated values inside SQL become literals, never SQL text.

Where a template stands is decided by DuckDB's own lexer (`duckdb.tokenize`), not by a lexer of ours, so exo
and DuckDB cannot disagree about what is a string, a name or a comment. The query is lexed with a placeholder
name for each template:
- a placeholder that is a whole token in code becomes a literal that is one complete unit (`(-1)`, `'it''s'`,
  `CAST('inf' AS DOUBLE)`, `[1, 2]`; the elements `1, 2` inside `in (...)`), and only after an operator, a
  comma, `(` or a keyword that starts a value (SELECT, WHERE, THEN, LIMIT, ...);
- inside a plain '...' string it is the value's text with quotes doubled, inside a "..." name the same with
  double quotes doubled; in a comment it is dropped;
- anywhere else (E'...', $tag$...$tag$, X'...', glued to a word or number, after a name or `::`) it is refused,
  and so is a per-row `$${{ }}` (pasted row by row, it would bypass all of this).
The result is lexed again and must have exactly the tokens expected (the literal's own in place of the
placeholder): if a value would change the query's tokens, render refuses it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exo_dagster.errors import UserError
from exo_dagster.sdk import templates
from exo_dagster.sdk.embedded_languages import EmbeddedLanguage
from exo_dagster.sdk.table import StoredTable


class SqlTemplateError(UserError, ValueError):
    """A template sits where no value can be placed safely; `offset` is the template's place in the query."""

    def __init__(self, problem: str, hint: str = "", offset: int | None = None):
        super().__init__(f"{problem}; {hint}" if hint else problem)
        self.problem, self.hint, self.offset = problem, hint, offset


# Keywords after which a value can stand as a whole operand (after any other word, `(` would make it a call).
VALUE_AFTER_KEYWORDS = frozenset(
    {
        "select",
        "distinct",
        "where",
        "and",
        "or",
        "not",
        "case",
        "when",
        "then",
        "else",
        "having",
        "qualify",
        "on",
        "limit",
        "offset",
        "between",
        "like",
        "ilike",
        "glob",
        "escape",
        "interval",
        "from",
        "join",
        "to",
    }
)
# Operators after which a value cannot stand: a name, a subscript, a cast's type or a parameter would follow.
_NOT_AFTER_OPERATORS = frozenset({")", "]", ".", "::", "$", "?"})
_CODE, _IN_LIST, _STRING, _IDENT, _COMMENT = "code", "in-list", "string", "identifier", "comment"
_WHERE_INSTEAD = (
    "put the template after an operator, a comma, `(` or a keyword such as SELECT, WHERE or THEN, "
    "or inside a plain '...' string for text"
)


@dataclass(frozen=True)
class _Token:
    start: int  # byte offsets into the UTF-8 query, as DuckDB reports them
    end: int  # end of the token's text (trailing blanks excluded)
    kind: str  # identifier, numeric_const, string_const, operator, keyword, comment
    text: str


@dataclass(frozen=True)
class _Slot:
    ref: templates.Reference
    where: str
    at: int  # byte offset of the placeholder in the skeleton
    token: int  # index of the token holding the placeholder


def render(text: str, resolve: Callable[[templates.Reference], Any]) -> str:
    """The query with every `${{ }}` replaced by a literal that fits where it stands (see the module doc)."""
    if not templates.has_template(text):
        return text
    skeleton, marks, tokens, slots, problems = _plan(text)
    if problems:
        raise SqlTemplateError(*problems[0])
    placed = [_place(slot, resolve(slot.ref)) for slot in slots]
    return _verified(skeleton, tokens, slots, placed, marks)


def check(text: str) -> list[SqlTemplateError]:
    """Every template whose place no value can take (a $-quoted string, glued to a word, ...), for validate time."""
    if not templates.has_template(text):
        return []
    try:
        return [SqlTemplateError(*problem) for problem in _plan(text)[4]]
    except templates.TemplateSyntaxError:
        return []  # reported as a template error
    except SqlTemplateError as exc:  # the query itself is not text DuckDB can read
        return [SqlTemplateError(exc.problem, exc.hint, 0)]


def quote_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A typed SQL literal for one value, one complete unit wherever an operand stands (a list is `[a, b]`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"({value})" if value < 0 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"CAST('{value}' AS DOUBLE)"
        return f"({value!r})" if math.copysign(1.0, value) < 0 else repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return f"CAST('{value}' AS DOUBLE)"
        return f"({value})" if value.is_signed() else str(value)
    if isinstance(value, dt.datetime):
        return f"CAST({quote_string(value.isoformat(sep=' '))} AS TIMESTAMP{'TZ' if value.tzinfo else ''})"
    if isinstance(value, dt.date):
        return f"CAST({quote_string(value.isoformat())} AS DATE)"
    if isinstance(value, dt.time):
        return f"CAST({quote_string(value.isoformat())} AS TIME{'TZ' if value.tzinfo else ''})"
    if isinstance(value, StoredTable):
        return quote_identifier(value.name) if value.name else value.duckdb_source()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return quote_string(json.dumps(value, default=str))
    if isinstance(value, bytes):
        return "CAST('" + "".join(f"\\x{b:02x}" for b in value) + "' AS BLOB)"
    return quote_string(str(value))


def elements(value: Any) -> str:
    """A column (list) as the comma-separated literals of an `in (...)` list; an empty one is NULL (matches nothing)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(literal(v) for v in value) if value else "NULL"
    return literal(value)


def _text(value: Any) -> str:
    if isinstance(value, StoredTable):
        return value.name or str(value)
    return templates.as_text(value)


def _place(slot: _Slot, value: Any) -> str:
    if slot.where == _CODE:
        return literal(value)
    if slot.where == _IN_LIST:
        return elements(value)
    if slot.where == _STRING:
        return _text(value).replace("'", "''")
    if slot.where == _IDENT:
        return _text(value).replace('"', '""')
    return ""  # in a comment


def _skeleton(pieces: tuple, text: str) -> tuple[str, list[str]]:
    """The query with each template replaced by a placeholder name that appears nowhere else in it."""
    mark = "__exo_value_"
    while mark in text:
        mark += "x"
    marks = [f"{mark}{i}__" for i in range(sum(not isinstance(piece, str) for piece in pieces))]
    out, i = [], 0
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        else:
            out.append(marks[i])
            i += 1
    return "".join(out), marks


def _encode(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise SqlTemplateError(
            f"{what} holds a character that is not valid text (a lone surrogate)", "remove it"
        ) from None


_KIND_NAMES: dict[Any, str] = {}


def _lex(text: str, what: str = "the query") -> list[tuple[int, str]]:
    """DuckDB's own tokens: (byte offset, kind) pairs."""
    import duckdb

    _encode(text, what)
    try:
        found = duckdb.tokenize(text)
    except (duckdb.Error, RuntimeError) as exc:
        raise SqlTemplateError(f"DuckDB cannot read {what}: {exc}", "fix the SQL") from None
    names = _KIND_NAMES
    return [(start, names.get(kind) or names.setdefault(kind, kind.name)) for start, kind in found]


def _tokens(text: str) -> list[_Token]:
    raw = _encode(text, "the query")
    found = _lex(text)
    out = []
    for i, (start, kind) in enumerate(found):
        stop = found[i + 1][0] if i + 1 < len(found) else len(raw)
        body = raw[start:stop].rstrip(b" \t\r\n\f\v")
        out.append(_Token(start, start + len(body), kind, body.decode("utf-8", "replace")))
    return out


@functools.lru_cache(maxsize=256)
def _plan(text: str) -> tuple[str, tuple[str, ...], tuple[_Token, ...], tuple[_Slot, ...], tuple[tuple, ...]]:
    """Where each template stands, by DuckDB's lexer, and (problem, hint, offset) for those where no value can.
    Cached by text: every run of a step renders the same query."""
    pieces = templates.parse(text).pieces
    skeleton, marks = _skeleton(pieces, text)
    tokens = _tokens(skeleton)
    raw = _encode(skeleton, "the query")
    refs = [p for p in pieces if not isinstance(p, str)]
    slots: list[_Slot] = []
    problems: list[tuple] = []
    enclosing = _enclosing_brackets(tokens)
    for ref, mark in zip(refs, marks):
        at = raw.index(mark.encode())
        k = next((i for i, t in enumerate(tokens) if t.start <= at < t.end), None)
        where, problem = _where(tokens, k, at, mark, ref, enclosing)
        if problem is not None:  # the templates, not their placeholders, in the message
            problems.append((_unmark(problem[0], marks, refs), _unmark(problem[1], marks, refs), ref.start))
        else:
            assert k is not None, "_where reports a placeholder that stands in no token"
            slots.append(_Slot(ref, where, at, k))
    return skeleton, tuple(marks), tuple(tokens), tuple(slots), tuple(problems)


def _where(tokens: list[_Token], k: int | None, at: int, mark: str, ref, enclosing) -> tuple[str, tuple | None]:
    t = ref.text
    if ref.per_row:  # a per-row value would be pasted into the text row by row, past this placement
        return "", (
            f"`{t}` is a per-row value, which cannot be placed in SQL text",
            "read the column in the query instead (`select ... from ID`), or use `${{ }}` for one value",
        )
    if k is None:
        return "", (f"`{t}` stands where DuckDB reads no token", _WHERE_INSTEAD)
    token = tokens[k]
    if token.kind == "comment":
        return _COMMENT, None
    if token.kind == "string_const":
        if token.text.startswith("'"):
            return _STRING, None
        if token.text.startswith("$"):
            return "", (
                f"`{t}` is inside a $-quoted string, where a value cannot be quoted safely",
                "use a '...' string or put the template outside quotes",
            )
        prefix = token.text.split("'", 1)[0]
        return "", (
            f"`{t}` is inside a `{prefix}'...'` string, which DuckDB reads by its own rules (escapes, hex, bits)",
            "use a plain '...' string (no prefix) or put the template outside quotes",
        )
    if token.kind == "identifier" and token.text.startswith('"'):
        return _IDENT, None
    if token.kind != "identifier" or token.start != at or token.text != mark:
        return "", (
            f"`{t}` is glued to other text (`{token.text}`), so a value would merge with it",
            "put a space, an operator or a comma around the template, or put it inside quotes",
        )
    before = _neighbour(tokens, k, -1)
    after = _neighbour(tokens, k, +1)
    if before is not None and not _value_may_follow(before):
        return "", (
            f"`{t}` follows `{before.text}`, where a value is not an operand (it could become a call, a name, "
            f"a type or a column number)",
            _WHERE_INSTEAD,
        )
    if after is not None and after.text == "(":
        return "", (
            f"`{t}` is followed by `(`, so a value would be called like a function",
            "put an operator or a comma after the template",
        )
    for other in (before, after):
        if other is not None and other.kind != "operator" and (other.end == at or other.start == at + len(mark)):
            return "", (f"`{t}` touches `{other.text}`, so a value would merge with it", "put a space between them")
    opener = enclosing[k]
    if (
        opener is not None
        and tokens[opener].text == "("
        and before is not None
        and before.text in ("(", ",")
        and after is not None
        and after.text in (")", ",")
    ):
        keyword = _neighbour(tokens, opener, -1)
        if keyword is not None and keyword.kind == "keyword" and keyword.text.lower() == "in":
            return _IN_LIST, None
    return _CODE, None


def _unmark(text: str, marks: list[str], refs: list) -> str:
    for mark, ref in zip(marks, refs):
        text = text.replace(mark, ref.text)
    return text


def _neighbour(tokens: list[_Token], k: int, step: int) -> _Token | None:
    i = k + step
    while 0 <= i < len(tokens) and tokens[i].kind == "comment":
        i += step
    return tokens[i] if 0 <= i < len(tokens) else None


def _value_may_follow(token: _Token) -> bool:
    if token.kind == "keyword":
        return token.text.lower() in VALUE_AFTER_KEYWORDS
    if token.kind == "operator" or token.text == ",":
        return token.text not in _NOT_AFTER_OPERATORS
    return False  # a name, a number, a string: a value after it would be an alias, a call or a typed literal


def _enclosing_brackets(tokens: list[_Token]) -> list[int | None]:
    """For each token, the index of the innermost open `(` or `[` around it."""
    stack: list[int] = []
    out: list[int | None] = []
    for i, token in enumerate(tokens):
        if token.kind == "operator" and token.text in (")", "]") and stack:
            stack.pop()
        out.append(stack[-1] if stack else None)
        if token.kind == "operator" and token.text in ("(", "["):
            stack.append(i)
    return out


def _verified(
    skeleton: str, tokens: tuple[_Token, ...], slots: tuple[_Slot, ...], placed: list[str], marks: tuple[str, ...]
) -> str:
    """The rendered query, after checking DuckDB lexes it into exactly the tokens the placements should give."""
    raw = _encode(skeleton, "the query")
    mark_at = {slot.at: (slot, value) for slot, value in zip(slots, placed)}
    every = sorted(raw.index(m.encode()) for m in marks)  # refused ones are not here: render raises before
    out = bytearray()
    pos = 0
    shifts: list[tuple[int, int]] = []  # (skeleton offset after a placeholder, cumulative shift)
    shift = 0
    for at in every:
        slot, value = mark_at[at]
        encoded = _encode(value, f"the value of `{slot.ref.text}`")
        length = len(next(m for m in marks if raw.startswith(m.encode(), at)))
        out += raw[pos:at] + encoded
        pos = at + length
        shift += len(encoded) - length
        shifts.append((pos, shift))
    out += raw[pos:]
    rendered = out.decode("utf-8")

    def moved(offset: int) -> int:
        return next((s for end, s in reversed(shifts) if end <= offset), 0)

    code = {slot.token: (slot, value) for slot, value in zip(slots, placed) if slot.where in (_CODE, _IN_LIST)}
    expected: list[tuple[int, str]] = []
    for i, token in enumerate(tokens):
        start = token.start + moved(token.start)
        if i in code:
            slot, value = code[i]
            own = _lex(value, f"the value of `{slot.ref.text}`")
            if not _complete(value, own, slot.where == _IN_LIST):
                raise SqlTemplateError(
                    f"the value of `{slot.ref.text}` would change how DuckDB reads the query "
                    f"(`{value}` is not one complete value)",
                    _WHERE_INSTEAD,
                    slot.ref.start,
                )
            expected += [(start + at, kind) for at, kind in own]
        else:
            expected.append((start, token.kind))
    actual = _lex(rendered)
    if actual != expected:
        diverge = next((a for a, b in zip(actual, expected) if a != b), (actual or expected)[-1])[0]
        culprit = [slot for slot in slots if slot.at + moved(slot.at) <= diverge] or slots
        raise SqlTemplateError(
            f"the value of `{culprit[-1].ref.text}` would change how DuckDB reads the query",
            _WHERE_INSTEAD,
            culprit[-1].ref.start,
        )
    return rendered


def _complete(value: str, lexed: list[tuple[int, str]], in_list: bool) -> bool:
    """Whether a literal is one unit (a token, `(...)`, `[...]` or `name(...)`): no operator, comma or comment
    outside brackets could join it to its neighbours; in an `in (...)` list, each comma-separated part is one."""
    raw = value.encode("utf-8")
    ends = [start for start, _ in lexed[1:]] + [len(raw)]
    tokens = [(kind, raw[start:end].strip().decode("utf-8", "replace")) for (start, kind), end in zip(lexed, ends)]
    parts, depth, current = [], 0, []
    for kind, text in tokens:
        if kind == "comment":
            return False
        if kind == "operator" and text in ("(", "["):
            depth += 1
        elif kind == "operator" and text in (")", "]"):
            depth -= 1
        if in_list and depth == 0 and text == ",":
            parts.append(current)
            current = []
        else:
            current.append((kind, text, depth))
    parts.append(current)
    return depth == 0 and all(_unit(part) for part in parts)


def _unit(part: list[tuple[str, str, int]]) -> bool:
    if len(part) == 1:
        kind, text, _ = part[0]
        return (
            kind == "numeric_const"
            or (kind == "string_const" and text.startswith("'"))
            or (kind == "identifier" and text.startswith('"'))
            or text.upper() in ("NULL", "TRUE", "FALSE")
        )
    head = 1 if len(part) > 1 and part[0][0] in ("identifier", "keyword") and part[1][1] == "(" else 0
    if len(part) < head + 2 or part[head][1] not in ("(", "["):
        return False
    # the bracket opened at `head` closes at the last token and nowhere before it
    return all(depth > 0 for _, _, depth in part[head:-1]) and part[-1][2] == 0


SQL = EmbeddedLanguage("sql", render, check=check)


def sql_name(text: str) -> str:
    """A name as the DuckDB catalog spells it (`orders-report` -> `orders_report`): letters, digits, underscores."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)
