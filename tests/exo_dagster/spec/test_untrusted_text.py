"""Cluster-file text shown to people: no control character reaches a terminal, no markup renders in Markdown.

Checked against a real CommonMark renderer (markdown-it-py, with GFM tables and strikethrough) over generated text.
"""

from __future__ import annotations

import random
import unicodedata

import pytest

from exo_dagster.spec.untrusted_text import markdown_code, markdown_text, terminal

markdown_it = pytest.importorskip("markdown_it")
from markdown_it.common.utils import escapeHtml  # noqa: E402

RENDER = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
PUNCTUATION = "\\`*_~[]()<>&!#|@:/.=+-\"'{}$%^;,?1"
ODD = "\x00\x07\x08\x0b\x0c\x1b\r\x7f\x85\x9b\u2028\u2029\u202e\u2066\u200f"
ALPHABET = PUNCTUATION + ODD + "abcXY09 \té€"
ATTACKS = [
    "<script>alert(1)</script>",
    "[link](http://x)",
    "![img](http://x/y.png)",
    "<http://x>",
    "http://x",
    "www.x.com",
    "a@b.co",
    "&lt;b&gt;",
    "&#60;script&#62;",
    "```",
    "~~~",
    "# head",
    "- item",
    "1. one",
    "2) two",
    "> quote",
    "| a | b |\n|---|---|",
    "***",
    "___",
    "===",
    "---",
    "*em*",
    "_em_",
    "**b**",
    "`code`",
    "~~s~~",
    "[x]: http://x",
    "<div>html</div>",
    "\\*",
    "a\\",
    "    indented",
    "<!-- c -->",
]


def _random_text(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        size = rng.randint(1, 24)
        line = "".join(rng.choice(ALPHABET) if rng.random() < 0.8 else rng.choice(ATTACKS) for _ in range(size))
        out.append(line)
    return "\n".join(out)


def _expected_paragraph(text: str) -> str | None:
    """What a paragraph of `text` shows: its lines without surrounding blanks, as CommonMark keeps them."""
    lines = [line.strip(" \t") for line in terminal(text).split("\n")]
    if not all(lines):
        return None  # a blank line splits paragraphs; the fuzz checks single paragraphs
    return "\n".join(lines)


def test_terminal_replaces_every_control_character_one_for_one():
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET + "\n") for _ in range(rng.randint(0, 40)))
        for newlines in (True, False):
            shown = terminal(text, newlines=newlines)
            assert len(shown) == len(text)  # one character each: a caret under a quoted line stays in its column
            for char in shown:
                kept = "\t\n" if newlines else "\t"
                assert char in kept or unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp", "Cs"), (text, shown)
    assert terminal("a\x1b[31mred\r") == "a\u241b[31mred\u240d"
    assert terminal("a\nb") == "a\nb" and terminal("a\nb", newlines=False) == "a\u240ab"


def test_markdown_text_renders_as_exactly_the_text_for_generated_input():
    rng = random.Random(21)
    checked = 0
    for _ in range(4000):
        text = _random_text(rng, rng.randint(1, 3))
        expected = _expected_paragraph(text)
        if expected is None:
            continue
        html = RENDER.render(markdown_text(text))
        assert html == f"<p>{escapeHtml(expected)}</p>\n", (text, markdown_text(text), html)
        assert "://" not in markdown_text(text) and "www." not in markdown_text(text).lower()  # GFM autolink literals
        checked += 1
    assert checked > 3000


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_known_markup_shows_as_typed(attack):
    html = RENDER.render(markdown_text(attack))
    for tag in (
        "<a ",
        "<img",
        "<script",
        "<div",
        "<em",
        "<strong",
        "<code",
        "<h1",
        "<ul",
        "<ol",
        "<blockquote",
        "<table",
        "<s>",
        "<hr",
        "<pre",
        "<!--",
    ):
        assert tag not in html, (attack, html)


def test_markdown_code_cannot_be_closed_from_inside():
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(rng.choice("`~ab\n<>[]()*") for _ in range(rng.randint(1, 30)))
        html = RENDER.render(markdown_code(text))
        assert html == f"<pre><code>{escapeHtml(terminal(text))}\n</code></pre>\n", (text, html)
