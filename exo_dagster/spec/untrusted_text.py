"""Text from a cluster file (names, descriptions, paths, quoted lines of a broken file) shown to people.

A cluster file is written by anyone who may add one, so its text must not act on what shows it:
- `terminal(text)`: for a terminal or a log. Control characters (ESC sequences, `\\r`, C1 controls, bidi
  overrides) become visible one-character stand-ins (`\\x1b` -> `␛`), so a quoted line keeps its columns.
- `markdown_text(text)`: for a description or metadata that the Dagster UI renders as Markdown: shown as
  written, never as markup (no HTML, links, images, autolinks, emphasis, headings, lists or tables).
- `markdown_code(text)`: a fenced code block that no line of `text` can close.
Every place that puts cluster-file text into a description, a log or the terminal goes through these.
"""

from __future__ import annotations

import re

# C0 controls -> U+2400..U+241F (Control Pictures), DEL -> U+2421; C1 controls, bidi controls, line/paragraph
# separators and lone surrogates (which no terminal can encode) -> U+FFFD
_C0 = {code: chr(0x2400 + code) for code in range(0x20)}
_OTHER = {
    0x7F: "\u2421",
    **dict.fromkeys(
        (*range(128, 160), 1564, 8206, 8207, 8232, 8233, *range(8234, 8239), *range(8294, 8298), *range(55296, 57344)),
        "�",
    ),
}
_TERMINAL = {**_C0, **_OTHER}
_TERMINAL.pop(0x09)  # a tab stays a tab (a quoted line's caret lines up with it)
_TERMINAL_LINES = dict(_TERMINAL)
_TERMINAL_LINES.pop(0x0A)


def terminal(text: object, *, newlines: bool = True) -> str:
    """`text` safe to print or log: every control character but tab (and newline, unless `newlines=False`)
    replaced by a visible stand-in of one character."""
    return str(text).translate(_TERMINAL_LINES if newlines else _TERMINAL)


_ALWAYS = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "~": "\\~",
    "[": "\\[",
    "]": "\\]",
    "|": "\\|",
    "@": "\\@",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
}
_LINE_START = re.compile(r"^(\d{1,9})([.)])|^([#+\-=])")
_AUTOLINK = re.compile(r"(?<=:)//|(?i:(?<=www))\.")


def _markdown_line(line: str) -> str:
    line = line.strip(" \t")  # 4 leading spaces make a code block, 2 trailing ones a line break
    out = []
    for i, char in enumerate(line):
        if char == "_":  # between two letters or digits `_` can neither open nor close emphasis
            inside = 0 < i < len(line) - 1 and line[i - 1].isalnum() and line[i + 1].isalnum()
            out.append("_" if inside else "\\_")
        else:
            out.append(_ALWAYS.get(char, char))
    escaped = "".join(out)
    escaped = _AUTOLINK.sub(lambda m: "\\/\\/" if m.group() == "//" else "\\.", escaped)  # http://, www.
    # a heading, list item, setext underline or thematic break starts at the line's first character
    return _LINE_START.sub(
        lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", escaped, count=1
    )


def markdown_text(text: object) -> str:
    """`text` as Markdown that renders as exactly that text (line breaks as Markdown's; blanks around lines dropped)."""
    return "\n".join(_markdown_line(line) for line in terminal(text).split("\n"))


def markdown_code(text: object) -> str:
    """`text` as a fenced code block: a fence longer than any run of backticks in it, so no line closes it early."""
    body = terminal(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{body}\n{fence}"
