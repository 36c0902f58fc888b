"""Every kind of spec mistake gives FILE:LINE:COL, the quoted line with a caret, and a fix."""

from __future__ import annotations

import textwrap

import pytest

from exo_dagster import SpecError, load_cluster_file

HEAD = """\
version: 0.0.1b
cluster:
  identifier: acme/errors
"""

FILES = """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data}
"""


def errors_of(write_cluster, text: str, **kwargs) -> tuple[str, SpecError]:
    path = write_cluster(textwrap.dedent(text))
    with pytest.raises(SpecError) as info:
        load_cluster_file(path, **kwargs)
    return str(path), info.value


def assert_error(err: SpecError, file: str, line: int, col: int, *needles: str) -> None:
    located = [d for d in err.errors if (d.location.line, d.location.column) == (line, col)]
    assert located, f"no error at {line}:{col}; got:\n{err.report()}"
    text = " ".join(f"{d.message} {d.hint}" for d in located)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    report = err.report()
    assert f"{file}:{line}:{col}: error:" in report
    assert "Traceback" not in report


def test_bad_yaml_syntax(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + "      input: {paths: [a, b}\n")
    assert_error(err, file, 9, 27, "YAML syntax error", "expected ',' or ']'")


def test_unknown_top_level_key_suggests_spelling(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  retires: 3\n" + FILES)
    assert_error(err, file, 4, 3, "unknown key `retires`", "`retries`")


def test_missing_required_field(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  satellites:
    - name: Files
      identifier: files
""")
    assert_error(err, file, 5, 7, "missing required field `uses`", "add `uses:")


def test_wrong_type(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  retries: lots\n" + FILES)
    assert_error(err, file, 4, 12, "`retries`", "whole number")


def test_unknown_satellite_suggests_closest(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
""")
    assert_error(err, file, 6, 13, "unknown satellite `satellite/exospherehost/get-filez`",
                 "satellite/exospherehost/get-files")


def test_unknown_satellite_version(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files@9.9.9
""")
    assert_error(err, file, 6, 13, "unknown version", "satellite/exospherehost/get-files@1.0.0")


def test_duplicate_identifier(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + """\
    - name: Again
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data}
""")
    assert_error(err, file, 11, 19, "duplicate identifier `files`")


def test_reference_to_unknown_satellite(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + """\
    - name: Read
      uses: satellite/exospherehost/read-table
      input: {paths: "${{ satellites.filez.output.path }}"}
""")
    assert_error(err, file, 11, 23, "unknown satellite `filez`", "`files`")


def test_reference_to_later_satellite(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: ${{ satellites.files.output.path }}
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data}
""")
    assert_error(err, file, 8, 16, "a later satellite `files`", "move this step below")


def test_bad_template_syntax(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + """\
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: "rows: ${{ satellites.files.output.path"
""")
    assert_error(err, file, 12, 23, "unclosed template", "close it with `}}`")


def test_bad_template_root(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + """\
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: ${{ satelites.files.output.path }}
""")
    assert_error(err, file, 12, 20, "unknown template root `satelites`")


def test_invalid_satellite_config(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      config:
        folder-path: data
        provider: dropbox
        recursive: sometimes
        colour: blue
""")
    assert_error(err, file, 9, 19, "`provider`", "'local'")
    assert_error(err, file, 10, 20, "`recursive`", "true or false")
    assert_error(err, file, 11, 9, "unknown key `colour`", "allowed keys here")


def test_bad_cron(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  trigger:
    cron: "every hour"
""" + FILES)
    assert_error(err, file, 5, 11, "not a valid cron expression", "five fields")


def test_bad_sla(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  sla: 3 hours\n" + FILES)  # any duration is fine (3h), this is none
    assert_error(err, file, 4, 8, "`sla`", "not a duration")


def test_secret_used_but_not_declared(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      config:
        provider: s3
        folder-path: bucket/x
        secrets:
          - KEY: ${{ secrets.AWS_KEY }}
""")
    assert_error(err, file, 11, 18, "secret `AWS_KEY` is used but not declared", "- AWS_KEY: ${{ env.AWS_KEY }}")


def test_literal_secret_warns_and_strict_fails(write_cluster):
    text = HEAD + """\
  secrets:
    - TOKEN: sk-literal-value-123
""" + FILES
    path = write_cluster(text)
    cluster = load_cluster_file(path)
    assert [(w.location.line, w.location.column) for w in cluster.warnings] == [(5, 14)]
    assert "literal value" in cluster.warnings[0].message
    assert "sk-literal-value-123" not in cluster.warnings[0].render(text.splitlines())[:40]  # message names, not quotes, it
    with pytest.raises(SpecError) as info:
        load_cluster_file(path, strict=True)
    assert_error(info.value, str(path), 5, 14, "literal value")


def test_all_errors_of_a_file_are_reported_at_once(write_cluster):
    file, err = errors_of(write_cluster, HEAD + """\
  sla: 2 hours
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
    - name: Sql
      uses: satellite/exospherehost/sql
      config: {query: 1, limit: 3}
""")
    lines = sorted((d.location.line, d.location.column) for d in err.errors)
    assert lines == [(4, 8), (7, 13), (10, 23), (10, 26)], err.report()
    assert err.report().rstrip().endswith("4 errors")


def test_report_quotes_line_with_caret(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  sla: 3 hours\n" + FILES)
    report = err.report()
    assert "    sla: 3 hours" in report.replace("  sla", "sla", 1) or "  sla: 3 hours" in report
    caret_line = report.splitlines()[report.splitlines().index(next(l for l in report.splitlines() if l.strip() == "sla: 3 hours")) + 1]
    assert caret_line.index("^") == 4 + 7  # four spaces of indent, then column 8
    assert "fix:" in report


def test_unknown_version(write_cluster):
    file, err = errors_of(write_cluster, "version: 9.9\ncluster:\n  identifier: a/b\n" + FILES)
    assert_error(err, file, 1, 10, "unsupported spec version", "0.0.1b")


def test_bad_cluster_identifier(write_cluster):
    file, err = errors_of(write_cluster, "version: 0.0.1b\ncluster:\n  identifier: no-slash\n" + FILES)
    assert_error(err, file, 3, 15, "`identifier`", "project/name")


def test_after_must_name_earlier_step(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + """\
    - name: Sql
      uses: satellite/exospherehost/sql
      after: [filez]
      config: {query: select 1}
""")
    assert_error(err, file, 11, 15, "`after: filez`", "`files`")
