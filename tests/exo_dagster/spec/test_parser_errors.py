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
    text = " ".join(f"{d.message} {d.hint} " + " ".join(n.message for n in d.notes) for d in located)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    report = err.report()
    assert f"{file}:{line}:{col}: error:" in report
    assert "Traceback" not in report


def test_bad_yaml_syntax(write_cluster):
    # the `[` is never closed: reported at the bracket, with libyaml's words at the place it stopped as a note
    file, err = errors_of(write_cluster, HEAD + FILES + "      input: {paths: [a, b}\n")
    assert_error(err, file, 9, 22, "unclosed `[`", "close it with `]`", "expected ',' or ']'")
    assert "  9:27: note: YAML stopped here" in err.report()


def test_unknown_top_level_key_suggests_spelling(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  retires: 3\n" + FILES)
    assert_error(err, file, 4, 3, "unknown key `retires`", "`retries`")


def test_missing_required_field(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Files
      identifier: files
""",
    )
    assert_error(err, file, 5, 7, "missing required field `uses`", "add `uses:")


def test_wrong_type(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  retries: lots\n" + FILES)
    assert_error(err, file, 4, 12, "`retries`", "whole number")


def test_unknown_satellite_suggests_closest(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
""",
    )
    assert_error(
        err, file, 6, 13, "unknown satellite `satellite/exospherehost/get-filez`", "satellite/exospherehost/get-files"
    )


def test_unknown_satellite_version(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files@9.9.9
""",
    )
    assert_error(err, file, 6, 13, "unknown version", "satellite/exospherehost/get-files@1.0.0")


def test_duplicate_identifier(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + FILES
        + """\
    - name: Again
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data}
""",
    )
    assert_error(err, file, 11, 19, "duplicate identifier `files`")


def test_reference_to_unknown_satellite(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + FILES
        + """\
    - name: Read
      uses: satellite/exospherehost/read-table
      input: {paths: "${{ satellites.filez.output.path }}"}
""",
    )
    assert_error(err, file, 11, 23, "unknown satellite `filez`", "`files`")


def test_reference_to_later_satellite(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: ${{ satellites.files.output.path }}
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data}
""",
    )
    assert_error(err, file, 8, 16, "a later satellite `files`", "move this step below")


def test_bad_template_syntax(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + FILES
        + """\
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: "rows: ${{ satellites.files.output.path"
""",
    )
    assert_error(err, file, 12, 23, "unclosed template", "close it with `}}`")


def test_bad_template_root(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + FILES
        + """\
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: ${{ satelites.files.output.path }}
""",
    )
    assert_error(err, file, 12, 20, "unknown template root `satelites`")


def test_invalid_satellite_config(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      config:
        folder-path: data
        provider: dropbox
        recursive: sometimes
        colour: blue
""",
    )
    assert_error(err, file, 9, 19, "`provider`", "'local'")
    assert_error(err, file, 10, 20, "`recursive`", "true or false")
    assert_error(err, file, 11, 9, "unknown key `colour`", "allowed keys here")


def test_bad_cron(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  trigger:
    cron: "every hour"
"""
        + FILES,
    )
    assert_error(err, file, 5, 11, "not a valid cron expression", "five fields")


def test_bad_sla(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  sla: 3 hours\n" + FILES)  # any duration is fine (3h), this is none
    assert_error(err, file, 4, 8, "`sla`", "not a duration")


def test_secret_used_but_not_declared(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      config:
        provider: s3
        folder-path: bucket/x
        secrets:
          - KEY: ${{ secrets.AWS_KEY }}
""",
    )
    assert_error(err, file, 11, 18, "secret `AWS_KEY` is used but not declared", "- AWS_KEY: ${{ env.AWS_KEY }}")


def test_literal_secret_warns_and_strict_fails(write_cluster):
    text = (
        HEAD
        + """\
  secrets:
    - TOKEN: sk-literal-value-123
"""
        + FILES
    )
    path = write_cluster(text)
    cluster = load_cluster_file(path)
    assert [(w.location.line, w.location.column) for w in cluster.warnings] == [(5, 14)]
    assert "literal value" in cluster.warnings[0].message
    assert (
        "sk-literal-value-123" not in cluster.warnings[0].render(text.splitlines())[:40]
    )  # message names, not quotes, it
    with pytest.raises(SpecError) as info:
        load_cluster_file(path, strict=True)
    assert_error(info.value, str(path), 5, 14, "literal value")


def test_all_errors_of_a_file_are_reported_at_once(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  sla: 2 hours
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
    - name: Sql
      uses: satellite/exospherehost/sql
      config: {query: 1, limit: 3}
""",
    )
    lines = sorted((d.location.line, d.location.column) for d in err.errors)
    assert lines == [(4, 8), (7, 13), (10, 23), (10, 26)], err.report()
    assert err.report().rstrip().endswith("4 errors")


def test_report_quotes_line_with_caret(write_cluster):
    file, err = errors_of(write_cluster, HEAD + "  sla: 3 hours\n" + FILES)
    report = err.report()
    assert "    sla: 3 hours" in report.replace("  sla", "sla", 1) or "  sla: 3 hours" in report
    caret_line = report.splitlines()[
        report.splitlines().index(next(line for line in report.splitlines() if line.strip() == "sla: 3 hours")) + 1
    ]
    assert caret_line.index("^") == 4 + 7  # four spaces of indent, then column 8
    assert "fix:" in report


def test_unknown_version(write_cluster):
    file, err = errors_of(write_cluster, "version: 9.9\ncluster:\n  identifier: a/b\n" + FILES)
    assert_error(err, file, 1, 10, "unsupported spec version", "0.0.1b")


def test_bad_cluster_identifier(write_cluster):
    file, err = errors_of(write_cluster, "version: 0.0.1b\ncluster:\n  identifier: no-slash\n" + FILES)
    assert_error(err, file, 3, 15, "`identifier`", "project/name")


def test_after_must_name_earlier_step(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + FILES
        + """\
    - name: Sql
      uses: satellite/exospherehost/sql
      after: [filez]
      config: {query: select 1}
""",
    )
    assert_error(err, file, 11, 15, "`after: filez`", "`files`")


# -- all errors of a file at once: no check is skipped because another part of the file is wrong ---------------------

MANY_MISTAKES = """\
version: 0.0.1b
cluster:
  identifier: acme/errors
  sla: 2 hours
  trigger:
    cron: "every hour"
    timezone: Mars/Olympus
  secrets:
    - TOKEN: ${{ env.TOKEN }}
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: files
      retires: 2
      config:
        folder-path: data
        recursive: sometimes
    - name: Mystery
      uses: satellite/exospherehost/get-filez
    - name: Read
      uses: satellite/exospherehost/read-table
      input:
        paths: "${{ satellites.files.output.path"
    - name: Sql
      uses: satellite/exospherehost/sql
      config:
        query: select * from mystery
        secrets:
          - KEY: ${{ secrets.NOPE }}
  failure:
    from: filez
    satellites:
      - name: Alert
        uses: satellite/exospherehost/send-alert
        config: {text: "${{ satellites.mystery.output }}", format: carrier-pigeon}
"""


def test_a_file_with_many_different_mistakes_reports_every_one(write_cluster):
    file, err = errors_of(write_cluster, MANY_MISTAKES)
    assert_error(err, file, 4, 8, "`sla`", "not a duration")  # shape (pydantic)
    assert_error(err, file, 6, 11, "not a valid cron expression")  # cron, despite the shape errors
    assert_error(err, file, 7, 15, "unknown timezone `Mars/Olympus`")  # timezone, likewise
    assert_error(err, file, 14, 7, "unknown key `retires`", "`retries`")  # a step's shape error...
    assert_error(err, file, 17, 20, "`recursive`", "true or false")  # ...does not hide its config errors
    assert_error(err, file, 19, 13, "unknown satellite", "get-files")  # unknown satellite
    assert_error(err, file, 23, 17, "unclosed template")  # template syntax
    assert_error(err, file, 29, 18, "secret `NOPE` is used but not declared")  # secrets
    assert_error(err, file, 31, 11, "`from: filez`", "`files`")  # failure.from
    assert_error(err, file, 35, 68, "`format`")  # a failure satellite's config
    # `mystery` (a step whose satellite is unknown) is known by name: no second error for referring to it
    assert not [d for d in err.errors if "`mystery`" in d.message], err.report()
    assert len(err.errors) == 10, err.report()
    assert err.report().rstrip().endswith("10 errors")


def test_cron_and_timezone_are_checked_when_the_trigger_itself_has_shape_errors(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  trigger:
    cron: "61 * * * *"
    timezone: Europe
    colour: blue
"""
        + FILES,
    )
    assert_error(err, file, 5, 11, "not a valid cron expression")
    assert_error(err, file, 6, 15, "unknown timezone `Europe`")
    assert_error(err, file, 7, 5, "unknown key `colour`", "cron, timezone, files, after")
    assert len(err.errors) == 3, err.report()


def test_a_bad_cron_is_reported_with_the_other_errors(write_cluster):
    # the user's report: a bad cron only showed up once it was the file's only error
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  retries: lots
  trigger: {cron: "every hour", timezone: "Nowhere/City"}
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
""",
    )
    assert_error(err, file, 4, 12, "`retries`", "whole number")
    assert_error(err, file, 5, 19, "not a valid cron expression")
    assert_error(err, file, 5, 43, "unknown timezone")
    assert_error(err, file, 8, 13, "unknown satellite")
    assert len(err.errors) == 4, err.report()


def test_a_step_with_a_malformed_identifier_is_still_checked_and_can_be_referred_to(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + """\
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      identifier: "my files"
      config: {folder-path: data, colour: blue}
    - name: Read
      uses: satellite/exospherehost/read-table
      input: {paths: "${{ satellites.my files.output.path }}"}
""",
    )
    assert_error(err, file, 7, 19, "`identifier`")
    assert_error(err, file, 8, 35, "unknown key `colour`")


def test_a_step_with_an_unknown_satellite_or_a_duplicate_identifier_is_still_checked(write_cluster):
    file, err = errors_of(
        write_cluster,
        HEAD
        + FILES
        + """\
    - name: Mystery
      uses: satellite/exospherehost/get-filez
      after: [filez]
      config:
        secrets: [{KEY: "${{ secrets.NOPE }}"}]
      input: {paths: "${{ satellites.files.output.path"}
    - name: Again
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: data, colour: blue}
""",
    )
    assert_error(err, file, 10, 13, "unknown satellite")
    assert_error(err, file, 11, 15, "`after: filez`")
    assert_error(err, file, 13, 25, "secret `NOPE` is used but not declared")
    assert_error(err, file, 14, 23, "unclosed template")
    assert_error(err, file, 17, 19, "duplicate identifier `files`")
    assert_error(err, file, 18, 35, "unknown key `colour`")
    assert len(err.errors) == 6, err.report()
