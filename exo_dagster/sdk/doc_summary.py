"""A satellite's docs, shortened: the first paragraph or the first sentence, on one line.

The satellite reference (catalog/reference.py) and a step asset's description (compile/compiler.py) both
show it; a docstring's first line would stop mid-sentence where the author wrapped it.
"""

from __future__ import annotations

import inspect
import re

# a sentence ends at . ! or ? followed by space and a capital, a code mark or a template (`mode`, ${{ ... }})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`$])")


def first_paragraph(docs: str) -> str:
    """The docs' first paragraph, on one line."""
    text = inspect.cleandoc(docs or "")
    return " ".join(text.split("\n\n", 1)[0].split())


def first_sentence(docs: str) -> str:
    """The first sentence of the docs' first paragraph, on one line ("" for no docs)."""
    return _SENTENCE_END.split(first_paragraph(docs), maxsplit=1)[0]
