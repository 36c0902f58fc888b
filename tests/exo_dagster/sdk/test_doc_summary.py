"""A satellite's docs shortened to a sentence: whole sentences, however the docstring was wrapped."""

from __future__ import annotations

from exo_dagster.sdk.doc_summary import first_paragraph, first_sentence

WRAPPED = """Runs one statement; every upstream output is a view, read straight
    from Parquet (or from memory). Templated values are literals, never SQL.

    Second paragraph."""


def test_the_first_sentence_runs_past_the_line_the_author_wrapped():
    assert (
        first_sentence(WRAPPED)
        == "Runs one statement; every upstream output is a view, read straight from Parquet (or from memory)."
    )


def test_a_sentence_ends_before_a_capital_a_code_mark_or_a_template_only():
    assert first_sentence("Reads e.g. the file. `mode` picks the rest.") == "Reads e.g. the file."
    assert first_sentence("Writes v1.2 files. ${{ x }} is kept.") == "Writes v1.2 files."
    assert first_sentence("One paragraph only") == "One paragraph only"


def test_the_first_paragraph_is_one_line_and_no_docs_give_nothing():
    assert first_paragraph(WRAPPED) == (
        "Runs one statement; every upstream output is a view, read straight from Parquet (or from memory). "
        "Templated values are literals, never SQL."
    )
    assert first_sentence("") == first_paragraph("") == ""
