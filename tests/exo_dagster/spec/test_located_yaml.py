"""The loader is a trust boundary: any bytes give data or located errors, never a traceback, hang or crash."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from exo_dagster import SpecError, parse_cluster
from exo_dagster.spec.located_yaml import MAX_ALIAS_VALUES, MAX_DEPTH, load_located

HEAD = """\
version: 0.0.1b
cluster:
  identifier: acme/hostile
  satellites:
    - name: Numbers
      uses: satellite/exospherehost/sql
      identifier: numbers
      config: {query: "select 1 as n"}
"""


def located(text: str | bytes) -> list:
    doc, errors = load_located(text, "f.yaml")
    assert errors, f"expected an error, got data {doc.data!r}"
    assert doc.data is None
    return errors


def spec_error(text: str | bytes) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_cluster(text, "f.yaml")
    assert "Traceback" not in info.value.report()
    return info.value


def test_billion_laughs_is_bounded_fast():
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        levels.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(levels) + "\n"
    assert len(text) < 700
    started = time.perf_counter()
    [error] = located(text)
    assert time.perf_counter() - started < 1.0
    assert f"more than {MAX_ALIAS_VALUES:,} values" in error.message
    assert error.location.line > 1  # at the alias that crossed the bound


def test_recursive_alias_is_a_located_error():
    [error] = located("a: &loop\n  b: *loop\n")
    assert (error.location.line, error.location.column) == (2, 6)
    assert "inside the value it names" in error.message


def test_undefined_alias():
    errors = located("a: *nowhere\n")
    assert errors[0].location.line == 1


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_a_located_error(opener, closer):
    text = "x: " + opener * (MAX_DEPTH + 5) + "1" + closer * (MAX_DEPTH + 5) + "\n"
    [error] = located(text)
    assert f"more than {MAX_DEPTH} levels" in error.message


def test_very_deep_nesting_does_not_crash_the_process():
    """200,000 levels used to overflow the C stack of libyaml's recursive composer (a segfault)."""
    code = (
        "from exo_dagster.spec.located_yaml import load_located\n"
        "d, e = load_located('x: ' + '[' * 200000 + ']' * 200000, 'f.yaml')\n"
        "print(e[0].location, e[0].message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "f.yaml:1:" in out.stdout and "levels deep" in out.stdout


def test_not_utf8_names_line_and_column():
    [error] = located(b"version: 0.0.1b\ncluster:\n  title: caf\xe9\n")
    assert (error.location.line, error.location.column) == (3, 13)
    assert "0xe9 is not UTF-8" in error.message


def test_utf16_file_is_named():
    [error] = located("version: 0.0.1b\n".encode("utf-16"))
    assert "UTF-16" in error.message


def test_control_character_is_located():
    [error] = located("version: 0.0.1b\ncluster:\n  title: a\x07b\n")
    assert (error.location.line, error.location.column) == (3, 11)
    assert "U+0007" in error.message


@pytest.mark.parametrize(
    "value,needle",
    [
        (".inf", "not a finite number"),
        (".nan", "not a finite number"),
        ("-.inf", "not a finite number"),
        ("1.0e+400", "not a finite number"),
        ("1" * 400, "64-bit integer"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!custom x", "`!custom` is not supported"),
        ("!!set {a: null}", "on a mapping"),
        ("!!omap [a: 1]", "on a list"),
        ("!!python/object:os.system x", "not supported"),
    ],
)
def test_values_a_spec_cannot_take_are_located(value, needle):
    errors = located(f"a:\n  b: {value}\n")
    assert errors[0].location.line == 2, errors
    assert needle in errors[0].message


def test_dates_stay_text_and_keys_stay_as_written():
    doc, errors = load_located("since: 2024-01-01\nat: 2024-01-01 10:00:00\non: yes\n1: one\n", "f.yaml")
    assert not errors
    assert doc.data == {"since": "2024-01-01", "at": "2024-01-01 10:00:00", "on": True, "1": "one"}


def test_merge_keys_with_overrides_are_accepted():
    doc, errors = load_located("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert not errors
    assert doc.data["use"] == {"x": 1, "y": 3}


def test_real_duplicates_still_reported():
    errors = located("a: 1\nb: 2\na: 3\n")
    assert errors[0].location.line == 3 and "duplicate key" in errors[0].message


def test_second_document_is_reported():
    errors = located("a: 1\n---\nb: 2\n")
    assert errors[0].location.line == 2 and "one YAML document" in errors[0].message


def test_timezone_that_is_a_folder_is_located():
    err = spec_error(HEAD.replace("  satellites:", "  trigger: {cron: '0 * * * *', timezone: America}\n  satellites:"))
    [error] = err.errors
    assert "unknown timezone `America`" in error.message and error.location.line == 4


@pytest.mark.parametrize("duration", ["1" * 400, "99999999999999d", 1e300])
def test_huge_durations_are_located(duration):
    err = spec_error(HEAD.replace("  satellites:", f"  retry: {{delay: {duration!r}}}\n  satellites:"))
    assert err.errors[0].location.line == 4


def test_resources_must_be_finite_and_bounded():
    err = spec_error(HEAD + "      resources: {cpu: 1e300, gpu: 100000}\n")
    assert {e.location.line for e in err.errors} == {9}


def test_identifiers_differing_only_in_case_are_rejected():
    err = spec_error(
        HEAD
        + """\
    - name: Other
      uses: satellite/exospherehost/sql
      identifier: Numbers
      config: {query: "select 2 as n"}
"""
    )
    assert "duplicate identifier `Numbers`" in err.errors[0].message and err.errors[0].location.line == 11


def test_a_date_value_loads_and_compiles():
    from exo_dagster import compile_cluster

    cluster = parse_cluster(HEAD + "      input: {since: 2024-01-01}\n", "f.yaml")
    assert cluster.steps[0].spec.input == {"since": "2024-01-01"}
    defs = compile_cluster(cluster)
    defs.get_repository_def().get_job(cluster.job_name)
