"""YAML syntax errors as located diagnostics that point where the problem starts.

libyaml reports where it gave up (`problem_mark`), which for the commonest mistakes is far from
the mistake: an unclosed quote is "found unexpected end of stream" at the end of the file, an
unclosed `[` is "did not find expected ',' or ']'" on some later line. Its `context_mark` often
names the start of the construct it was reading ("while scanning a quoted scalar" at the opening
quote); this module picks the place a person should look, says what is wrong in the file's terms
(unclosed quote, unclosed bracket, bad indentation, a tab) and keeps libyaml's own words as a note
at the place libyaml stopped.

Pure functions of the text and the exception; they never raise (the loader is a trust boundary).
"""

from __future__ import annotations

import re

import yaml

from exo_dagster.spec.errors import Diagnostic, Location, Note

MAX_DEPTH = 64  # a cluster file nests about 8 deep; anything far deeper is a mistake or an attack
NESTING_TOO_DEEP = f"values nest more than {MAX_DEPTH} levels deep"
NESTING_HINT = "flatten this value; a cluster file needs only a few levels"

QUOTE_HINT = (
    "check indentation and quoting here; values containing `: ` or starting "
    "with `{`, `[`, `*`, `&` or `!` must be quoted"
)
_CLOSE = {"{": "}", "[": "]"}
_KIND = {"{": "mapping", "[": "list"}
_EXAMPLE = {"{": "{a: 1, b: 2}", "[": "[a, b]"}
# a line inside a quoted string that looks like YAML structure: the quote swallowed the lines after it
_LOOKS_LIKE_YAML = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w.-]*:(?:\s|$)|^\s*-\s")


def syntax_diagnostic(
    exc: yaml.MarkedYAMLError, file: str, text: str, lines: list[str], loader_class: type
) -> Diagnostic:
    """One diagnostic for a libyaml error, at the place the problem starts."""
    try:
        return _classify(exc, file, text, lines, loader_class)
    except Exception:
        return _plain(exc, file, lines)


def _classify(exc: yaml.MarkedYAMLError, file: str, text: str, lines: list[str], loader_class: type) -> Diagnostic:
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = (exc.context or "").strip()
    pm, cm = exc.problem_mark, exc.context_mark
    where = _at(file, lines, pm) if pm is not None else _at(file, lines, cm)
    if "nesting depth" in problem:  # PyYAML 6.0.4+ stops deep flow nesting while it scans ahead, before exo's bound
        return Diagnostic(where, NESTING_TOO_DEEP, NESTING_HINT)

    swallowed, open_brackets = _scan(text, (pm.line, pm.column) if pm is not None else None, loader_class)
    quote = _unclosed_quote(exc, lines, swallowed)
    if quote is not None:
        line, column, char = quote
        start = Location(file, line + 1, column + 1)
        told = f"{problem}" + (f", {context} that started at {_pos(cm)}" if context and cm is not None else "")
        return Diagnostic(
            start,
            f"unclosed quote: the {char}...{char} string started here is never closed",
            f"close it with {char} at the end of the value"
            + (' (write \\" for a quote inside it)' if char == '"' else " (write '' for a quote inside it)"),
            notes=(Note(where, f"YAML stopped here: {told}"),),
        )

    if open_brackets and (context.startswith("while parsing a flow") or pm is None or pm.line >= len(lines)):
        line, column, bracket = open_brackets[-1]  # the innermost `{`/`[` still open where YAML stopped
        close, kind = _CLOSE[bracket], _KIND[bracket]
        found = _char(lines, pm.line, pm.column) if pm is not None else ""
        if pm is None or pm.line != line or found in ("", "}", "]") and found != close:
            return Diagnostic(
                Location(file, line + 1, column + 1),
                f"unclosed `{bracket}`: the {kind} started here has no matching `{close}`",
                f"close it with `{close}` (e.g. `{_EXAMPLE[bracket]}`), or separate its entries with `,`",
                notes=(Note(where, f"YAML stopped here: {problem}"),),
            )
        after_quote = _after_closing_quote(file, lines, pm)
        if after_quote is not None:
            return after_quote
        hint = "separate entries with `, `; quote a value that contains `,`, `:`, `{`, `}`, `[` or `]`"
        if "${{" in _line(lines, pm.line):
            hint = (
                "quote a `${{ }}` template inside `{...}` or `[...]`, e.g. "
                '`{paths: "${{ satellites.x.output.path }}"}`; ' + hint
            )
        return Diagnostic(
            where,
            f"YAML syntax error: {problem} in the `{bracket}...{close}` {kind} started at {line + 1}:{column + 1}",
            hint,
        )

    char = _char(lines, pm.line, pm.column) if pm is not None else ""
    if problem.startswith("found unknown escape character") and pm is not None:
        escape = _line(lines, pm.line)[pm.column : pm.column + 2]
        return Diagnostic(
            where,
            f"unknown escape `{escape}` in a double-quoted string"
            if escape.startswith("\\")
            else "unknown escape in a double-quoted string",
            "write `\\\\` for a backslash, or use single quotes ('...'), where a backslash is plain text",
        )
    if pm is not None and (
        char == "\t"
        or "found character that cannot start any token" in problem
        and "\t" in _line(lines, pm.line)[: pm.column + 1]
        and not _line(lines, pm.line)[: pm.column].strip()
    ):
        return Diagnostic(
            where,
            "a tab is used for indentation; YAML indents with spaces only",
            "replace the tab(s) at the start of this line with spaces",
        )
    if "found character that cannot start any token" in problem and char:
        return Diagnostic(
            where, f"`{char}` cannot start an unquoted value", 'quote the value, e.g. `key: "' + char + '..."`'
        )

    if problem.startswith("could not find expected ':'") and cm is not None:
        start = _at(file, lines, cm)
        words = _line(lines, cm.line)[cm.column :].strip()
        return Diagnostic(
            start,
            f"`{_short(words)}` is neither `key: value` nor a `- item`: expected `:` after a key",
            "add `: ` after the key (a space after the colon), or join this line to the value above it",
            notes=(Note(where, f"YAML stopped here: {problem}"),) if pm is not None and pm.line != cm.line else (),
        )

    if problem.startswith("mapping values are not allowed") and pm is not None:
        under = _under_a_value(file, lines, pm.line)
        if under is not None:
            return under
        return Diagnostic(where, "`: ` inside an unquoted value", 'quote the whole value, e.g. `key: "a: b"`')

    if (
        problem.startswith(("did not find expected key", "expected <block end>", "did not find expected '-'"))
        and pm is not None
        and cm is not None
    ):
        if char in ("]", "}"):
            return Diagnostic(
                where,
                f"`{char}` closes nothing: no `{'[' if char == ']' else '{'}` is open here",
                f"remove the extra `{char}`",
            )
        after_quote = _after_closing_quote(file, lines, pm)
        if after_quote is not None:
            return after_quote
        stripped = _line(lines, pm.line).lstrip()
        if pm.column == _indent(_line(lines, pm.line)) and re.match(r"-[^\s-]", stripped):
            return Diagnostic(
                where,
                f"`{_short(stripped.split(':')[0])}` is not a list item: `-` needs a space after it",
                f"write `- {stripped[1:]}`",
            )
        line_indent = _indent(_line(lines, pm.line))
        if pm.column == line_indent:
            under = _under_a_value(file, lines, pm.line)
            if under is not None:
                return under
            levels = _levels(lines, pm.line)
            if levels and line_indent not in levels:
                above = _line_above(lines, pm.line)
                columns = ", ".join(str(c + 1) for c in levels)
                return Diagnostic(
                    where,
                    f"bad indentation: column {line_indent + 1} lines up with no level above it "
                    f"(the lines above start their keys and items at columns {columns})",
                    "indent it with spaces to one of those columns"
                    + (
                        f" (column {_content_column(lines[above]) + 1} lines it up with line {above + 1})"
                        if above is not None
                        else ""
                    ),
                )
        if char == "-" and not context.endswith("block collection"):
            return Diagnostic(
                where,
                f"a `- ` list item where the mapping started at {_pos(cm)} expects a `key:`",
                "put the list under a key (`key:` then `- item` lines, indented), or make this line a `key: value`",
            )
        if context.endswith("block collection") and pm.column == cm.column:
            return Diagnostic(
                where,
                f"a `key:` where the list started at {_pos(cm)} expects a `- ` item",
                "start the line with `- `, or indent it under the item above",
            )
    return _plain(exc, file, lines)


def _plain(exc: yaml.MarkedYAMLError, file: str, lines: list[str]) -> Diagnostic:
    pm, cm = exc.problem_mark, exc.context_mark
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    where = _at(file, lines, pm if pm is not None else cm)
    notes = ()
    if exc.context and cm is not None and pm is not None and (cm.line, cm.column) != (pm.line, pm.column):
        notes = (Note(_at(file, lines, cm), f"{exc.context.strip()} that started here"),)
    return Diagnostic(where, f"YAML syntax error: {problem}", QUOTE_HINT, notes=notes)


# -- unclosed quotes --------------------------------------------------------------------------


def _unclosed_quote(
    exc: yaml.MarkedYAMLError, lines: list[str], swallowed: list[tuple[int, int, str]]
) -> tuple[int, int, str] | None:
    """(line, column, quote char) of the quote that was never closed, 0-based; None when the error is not one.

    Two shapes: the quoted string runs to the end of the file (or a `---`), libyaml says so with the
    opening quote as context mark; or it ran on to the next quote in the file, which "closed" it, and
    the pairs shifted by one: the first string spanning lines that swallowed `key:` lines is the culprit.
    """
    if exc.problem_mark is None:
        return None
    if swallowed:
        return swallowed[0]
    context = exc.context or ""
    if (
        "quoted scalar" in context
        and exc.context_mark is not None
        and (exc.problem or "").startswith(("found unexpected end of stream", "found unexpected document"))
    ):
        cm = exc.context_mark
        char = _char(lines, cm.line, cm.column)
        return cm.line, cm.column, char if char in "\"'" and char else '"'
    return None


def _scan(
    text: str, stop: tuple[int, int] | None, loader_class: type
) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """The tokens before `stop` (all, when None): quoted scalars that span lines and swallowed lines that look like
    YAML keys or items, and the `{`/`[` still open, as (line, column, char), 0-based."""
    out: list[tuple[int, int, str]] = []
    brackets: list[tuple[int, int, str]] = []
    loader = loader_class(text)
    try:
        while True:
            token = loader.get_token()
            if token is None or stop is not None and (token.start_mark.line, token.start_mark.column) >= stop:
                break
            if isinstance(token, (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)):
                brackets.append(
                    (
                        token.start_mark.line,
                        token.start_mark.column,
                        "{" if isinstance(token, yaml.FlowMappingStartToken) else "[",
                    )
                )
            elif isinstance(token, (yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)) and brackets:
                brackets.pop()
            elif (
                isinstance(token, yaml.ScalarToken)
                and token.style in ('"', "'")
                and token.end_mark.line > token.start_mark.line
            ):
                inner = (
                    text[token.start_mark.index + 1 : token.end_mark.index - 1]
                    if _index_ok(text, token)
                    else token.value
                )
                if any(_LOOKS_LIKE_YAML.match(piece) for piece in inner.splitlines()[1:]):
                    out.append((token.start_mark.line, token.start_mark.column, token.style))
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return out, brackets


def _index_ok(text: str, token: yaml.ScalarToken) -> bool:
    start, end = token.start_mark.index, token.end_mark.index
    return 0 <= start < end <= len(text) and text[start] == token.style


# -- small helpers ----------------------------------------------------------------------------


def _pos(mark: yaml.Mark | None) -> str:
    return f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "?"


def _line(lines: list[str], index: int) -> str:
    return lines[index] if 0 <= index < len(lines) else ""


def _char(lines: list[str], line: int, column: int) -> str:
    text = _line(lines, line)
    return text[column] if 0 <= column < len(text) else ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line)


def _after_closing_quote(file: str, lines: list[str], mark: yaml.Mark) -> Diagnostic | None:
    """Text right after a quoted value's closing quote, on its line (often a quote inside the value)."""
    before = _line(lines, mark.line)[: mark.column].rstrip()
    if not before or before[-1] not in "\"'" or mark.column >= len(_line(lines, mark.line)):
        return None
    inner = (
        "to put a ' inside a '...' value, write it twice (`'it''s'`), or use double quotes"
        if before[-1] == "'"
        else 'to put a " inside a "..." value, write \\", or use single quotes'
    )
    return Diagnostic(
        Location(file, mark.line + 1, mark.column + 1),
        "text after the closing quote of a quoted value",
        f"quote the whole value, or remove what follows the closing quote; {inner}",
    )


def _under_a_value(file: str, lines: list[str], index: int) -> Diagnostic | None:
    """A line indented deeper than the line above it, which already has a value: nothing can nest there."""
    above = _line_above(lines, index)
    indent = _indent(_line(lines, index))
    if (
        above is None
        or indent <= _indent(lines[above])
        or not re.search(r"(?::|^\s*-)\s+\S", _strip_comment(lines[above]))
    ):
        return None
    return Diagnostic(
        Location(file, index + 1, indent + 1),
        f"bad indentation: this line is indented under line {above + 1}, which already has a value",
        f"line it up with line {above + 1} (column {_content_column(lines[above]) + 1}), "
        "or, to nest it, leave nothing after that line's `:`",
    )


def _content_column(line: str) -> int:
    """Where a line's key starts: after its indentation and any `- ` list markers."""
    match = re.match(r"\s*(?:-\s+)*", line)
    return match.end() if match else 0


def _levels(lines: list[str], index: int) -> list[int]:
    """The columns (0-based) a line below `index - 1` can start at: those of the line above and its enclosing lines."""
    out: set[int] = set()
    limit: int | None = None
    for i in range(min(index, len(lines)) - 1, -1, -1):
        text = _strip_comment(lines[i])
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        indent = _indent(text)
        if limit is None or indent < limit:
            out |= {indent, _content_column(text)}
            limit = indent
        if limit == 0:
            break
    return sorted(out)


def _line_above(lines: list[str], index: int) -> int | None:
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            return i
    return None


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _at(file: str, lines: list[str], mark: yaml.Mark | None) -> Location:
    """A mark as a location that quotes a line: the end of the file is the end of its last line."""
    if mark is None:
        return Location(file, 1, 1)
    line, column = mark.line, mark.column
    if line >= len(lines):
        last = _line_above(lines, len(lines))
        if last is None:
            return Location(file, 1, 1)
        return Location(file, last + 1, len(lines[last].rstrip()) + 1)
    return Location(file, line + 1, column + 1)
