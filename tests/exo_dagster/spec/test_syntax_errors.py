"""YAML syntax errors point where the problem starts (not where libyaml gave up), quote that line with a
caret, and keep libyaml's words as a note at the place it stopped."""

from __future__ import annotations

import textwrap

import pytest

from exo_dagster import SpecError, load_cluster_file
from exo_dagster.spec.located_yaml import load_located

HEAD = """\
version: 0.0.1b
cluster:
  identifier: acme/syntax
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data}
"""  # 8 lines


def syntax_error(write_cluster, text: str):
    """The file's single diagnostic and its rendered report."""
    path = write_cluster(textwrap.dedent(text))
    with pytest.raises(SpecError) as info:
        load_cluster_file(path)
    err = info.value
    assert len(err.errors) == 1, err.report()
    report = err.report()
    assert "Traceback" not in report
    return str(path), err.errors[0], report


def assert_quotes(report: str, file: str, line: int, col: int, source_line: str) -> None:
    """The report names FILE:LINE:COL, quotes the line and puts the caret under the column."""
    lines = report.splitlines()
    head = next(i for i, text in enumerate(lines) if text.startswith(f"{file}:{line}:{col}: error:"))
    assert lines[head + 1] == "    " + source_line, report
    assert lines[head + 2] == "    " + " " * (col - 1) + "^", report


def test_unclosed_double_quote_in_block_context_points_at_the_quote(write_cluster):
    # the user's report: the quote opened on line 9 was reported at "12:1 found unexpected end of stream", unquoted
    text = (
        HEAD
        + """\
      description: "Reads the files
      retries: 2
      timeout: 5m
"""
    )
    file, d, report = syntax_error(write_cluster, text)
    assert (d.location.line, d.location.column) == (9, 20)
    assert "unclosed quote" in d.message and 'close it with "' in d.hint
    assert_quotes(report, file, 9, 20, '      description: "Reads the files')
    # libyaml's own words, at the place it stopped (the end of the file: the end of the last line), quoted too
    assert (
        "11:18: note: YAML stopped here: found unexpected end of stream, while scanning a quoted scalar "
        "that started at 9:20" in report
    )
    assert "          timeout: 5m\n" in report


def test_unclosed_single_quote_in_block_context(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      description: 'Reads the files\n      retries: 2\n")
    assert (d.location.line, d.location.column) == (9, 20)
    assert "unclosed quote" in d.message and "close it with '" in d.hint
    assert_quotes(report, file, 9, 20, "      description: 'Reads the files")


@pytest.mark.parametrize("quote", ['"', "'"])
def test_unclosed_quote_in_flow_context(write_cluster, quote):
    line = f"      input: {{paths: [a.csv, {quote}b.csv], sep: x}}"
    file, d, report = syntax_error(write_cluster, HEAD + line + "\n      retries: 1\n")
    assert (d.location.line, d.location.column) == (9, 30)
    assert "unclosed quote" in d.message and f"close it with {quote}" in d.hint
    assert_quotes(report, file, 9, 30, line)


def test_unclosed_quote_closed_by_a_later_quote_still_points_at_the_first(write_cluster):
    # the next `"` in the file "closes" it and the pairs shift: libyaml stops on line 12, the mistake is on line 9
    text = (
        HEAD
        + """\
      description: "Reads the files
      retries: 2
    - name: Sql
      uses: "satellite/exospherehost/sql"
      config: {query: select 1}
"""
    )
    file, d, report = syntax_error(write_cluster, text)
    assert (d.location.line, d.location.column) == (9, 20), report
    assert "unclosed quote" in d.message
    assert "12:" in report and "note: YAML stopped here" in report


def test_a_string_that_legitimately_spans_lines_is_not_blamed(write_cluster):
    text = (
        HEAD
        + """\
    - name: Sql
      uses: satellite/exospherehost/sql
      config:
        query: "select *
          from files"
        limit: {rows: 3
"""
    )
    file, d, report = syntax_error(write_cluster, text)
    assert (d.location.line, d.location.column) == (14, 16), report
    assert "unclosed `{`" in d.message


def test_unclosed_flow_mapping_points_at_its_brace(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      input: {paths: x\n      retries: 2\n")
    assert (d.location.line, d.location.column) == (9, 14)
    assert "unclosed `{`" in d.message and "`}`" in d.hint
    assert_quotes(report, file, 9, 14, "      input: {paths: x")
    assert "10:14: note: YAML stopped here: did not find expected ',' or '}'" in report


def test_unclosed_flow_sequence_points_at_its_bracket(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      after: [files, other\n")
    assert (d.location.line, d.location.column) == (9, 14)
    assert "unclosed `[`" in d.message and "`]`" in d.hint
    assert_quotes(report, file, 9, 14, "      after: [files, other")


def test_empty_unclosed_bracket_at_the_end_of_the_file(write_cluster):
    # libyaml says "did not find expected node content while parsing a flow node" at the end of the file
    file, d, report = syntax_error(write_cluster, HEAD + "      after: [\n")
    assert (d.location.line, d.location.column) == (9, 14)
    assert "unclosed `[`" in d.message


def test_unclosed_bracket_spanning_lines(write_cluster):
    file, d, report = syntax_error(
        write_cluster, HEAD + "      input: {\n        paths: x,\n        sep: y\n      retries: 1\n"
    )
    assert (d.location.line, d.location.column) == (9, 14)
    assert "unclosed `{`" in d.message and "12:" in report


def test_missing_comma_inside_a_flow_mapping_points_at_the_entry(write_cluster):
    # `x sep` is one plain value, so YAML stops at the `:` after it
    file, d, report = syntax_error(write_cluster, HEAD + "      input: {paths: x sep: y}\n")
    assert (d.location.line, d.location.column) == (9, 27)
    assert "started at 9:14" in d.message and "separate entries with `, `" in d.hint


def test_extra_closing_bracket(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      after: [files]]\n")
    assert (d.location.line, d.location.column) == (9, 21)
    assert "`]` closes nothing" in d.message


def test_bad_indentation_less_than_its_siblings(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "     retries: 2\n")
    assert (d.location.line, d.location.column) == (9, 6)
    assert "bad indentation: column 6 lines up with no level above it" in d.message
    assert "columns 1, 3, 5, 7" in d.message and "column 7 lines it up with line 8" in d.hint
    assert_quotes(report, file, 9, 6, "     retries: 2")


def test_bad_indentation_under_a_key_that_has_a_value(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "        retries: 2\n")
    assert (d.location.line, d.location.column) == (9, 9)
    assert "bad indentation" in d.message and "line 8" in d.message
    assert_quotes(report, file, 9, 9, "        retries: 2")


def test_bad_indentation_in_a_list(write_cluster):
    text = (
        HEAD
        + """\
      after:
        - files
        other: 1
"""
    )
    file, d, report = syntax_error(write_cluster, text)
    assert (d.location.line, d.location.column) == (11, 9)
    assert "expects a `- ` item" in d.message


def test_tab_used_for_indentation(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "\tretries: 2\n")
    assert (d.location.line, d.location.column) == (9, 1)
    assert "tab" in d.message and "spaces" in d.hint
    assert_quotes(report, file, 9, 1, "\tretries: 2")


def test_tab_after_spaces_in_the_indentation(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      input:\n        \tpaths: x\n")
    assert (d.location.line, d.location.column) == (10, 9)
    assert "tab" in d.message
    assert_quotes(report, file, 10, 9, "        \tpaths: x")


def test_duplicate_key_at_the_second_occurrence(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      identifier: again\n")
    assert (d.location.line, d.location.column) == (9, 7)
    assert "duplicate key `identifier` (first at 7:7)" in d.message
    assert_quotes(report, file, 9, 7, "      identifier: again")
    assert "  7:7: note: `identifier` is first set here\n          identifier: files\n" in report


def test_colon_inside_an_unquoted_value(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      description: note: read this\n")
    assert (d.location.line, d.location.column) == (9, 24)
    assert "`: ` inside an unquoted value" in d.message and "quote" in d.hint


def test_unknown_escape_in_a_double_quoted_string(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + '      description: "C:\\query"\n')
    assert (d.location.line, d.location.column) == (9, 23)
    assert "unknown escape `\\q`" in d.message and "single quotes" in d.hint


CASES = [
    '      description: "open\n',
    "      description: 'open\n      retries: 1\n",
    "      input: {a: [1, 2}\n",
    "      input: {a: 1\n",
    "      after: [files\n",
    "      after: [\n",
    "     retries: 2\n",
    "        retries: 2\n",
    "\tretries: 2\n",
    "      identifier: again\n",
    "      description: a: b\n",
    '      description: "a\\qb"\n',
    "      after: [files]]\n",
    '      description: "a" b\n',
    "      retries: 1\n---\nmore: 1\n",
    "      description: @at\n",
    "      &a retries: *a\n",
    "      retries: *nothing\n",
    "   - x\n",
    "      retries\n",
]


@pytest.mark.parametrize("tail", CASES)
def test_every_syntax_error_quotes_a_source_line_with_a_caret(write_cluster, tail):
    path = write_cluster(HEAD + tail)
    with pytest.raises(SpecError) as info:
        load_cluster_file(path)
    lines = (HEAD + tail).splitlines()
    report = info.value.report().splitlines()
    for d in info.value.errors:
        # the mistake is in the tail: the error points there, never at the valid lines above it
        assert len(HEAD.splitlines()) < d.location.line <= len(lines), d
        head = report.index(
            next(t for t in report if t.startswith(f"{path}:{d.location.line}:{d.location.column}: error:"))
        )
        assert report[head + 1] == "    " + lines[d.location.line - 1]
        assert report[head + 2].rstrip().endswith("^")


def test_bytes_that_are_not_utf8_quote_their_line():
    doc, problems = load_located(b"version: 0.0.1b\nname: caf\xe9\n", "f.yaml")
    assert [(d.location.line, d.location.column) for d in problems] == [(2, 10)]
    assert "    name: caf\ufffd\n             ^" in problems[0].render(doc.lines)


def test_a_quote_inside_a_single_quoted_value(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      description: 'it's mine'\n")
    assert (d.location.line, d.location.column) == (9, 24)  # the `s` after `'it'`
    assert "text after the closing quote" in d.message and "'it''s'" in d.hint


def test_a_dash_without_a_space(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "    -name: Sql\n      uses: satellite/exospherehost/sql\n")
    assert (d.location.line, d.location.column) == (9, 5)
    assert "`-` needs a space" in d.message and "`- name: Sql`" in d.hint


def test_an_unquoted_template_inside_a_flow_mapping(write_cluster):
    file, d, report = syntax_error(write_cluster, HEAD + "      input: {paths: ${{ satellites.files.output.path }}}\n")
    assert d.location.line == 9
    assert "quote a `${{ }}` template inside `{...}`" in d.hint
