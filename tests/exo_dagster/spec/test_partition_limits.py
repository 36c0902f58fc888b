"""A partition key is checked where it is declared: one that could not name its file fails `exo validate`, located.

Each partition is a file `<key, %-encoded>.parquet`, first written as `.<that>.<pid>-<hex>.tmp`; a 250-character key
used to pass validation and then fail every run ("File name too long").
"""

from __future__ import annotations

import os
import random
import uuid

import pytest

from exo_dagster import load_cluster_file
from exo_dagster.spec.partition_checks import MAX_ENCODED_KEY, MAX_KEY_CHARS, encoded_key, partition_key_problem
from exo_dagster.storage.io_manager import partition_file_stem
from tests.exo_dagster.spec.test_parser_errors import assert_error, errors_of

HEAD = """\
version: 0.0.1b
cluster:
  identifier: acme/keys
  satellites:
    - {name: Q, uses: satellite/exospherehost/sql, identifier: q, config: {query: "select ${{ partition.key }} as k"}}
  partitions:
"""


def test_long_and_unsafe_static_keys_are_located_errors(write_cluster):
    long_key = "k" * 250
    file, err = errors_of(
        write_cluster,
        HEAD + f'    static:\n      - {long_key}\n      - a/b\n      - "a\\\\b"\n'
        '      - ..\n      - "x\\e[31m"\n      - "rtl\\u202Eexe"\n'
        f'      - "{"€" * 23}"\n      - ok\n',
    )
    assert_error(err, file, 8, 9, "has 250 characters; the most is 100", "at most 100 characters")
    assert_error(err, file, 9, 9, "partition key 'a/b' holds '/', a path separator")
    assert_error(err, file, 10, 9, "holds '\\\\', a path separator")
    assert_error(err, file, 11, 9, "partition key '..' holds '..'")
    assert_error(err, file, 12, 9, "holds '\\x1b', a control character")
    assert_error(err, file, 13, 9, "holds '\\u202e', an invisible format character")
    assert_error(err, file, 14, 9, "is 207 characters once %-encoded for its file name; the most is 200")
    assert len(err.errors) == 7, err.report()
    assert "\x1b" not in err.report() and "\u202e" not in err.report()  # the quoted lines are shown, not obeyed


def test_keys_at_the_limits_load(write_cluster):
    keys = ["k" * MAX_KEY_CHARS, "€" * 22, "2026.11", "eu-west_1", "a.b", "ünïcödé"]
    cluster = load_cluster_file(write_cluster(HEAD + "    static: [" + ", ".join(f'"{k}"' for k in keys) + "]\n"))
    assert cluster.spec.partitions.static == keys
    file, err = errors_of(write_cluster, HEAD + f"    static: [{'k' * (MAX_KEY_CHARS + 1)}]\n")
    assert_error(err, file, 7, 14, f"has {MAX_KEY_CHARS + 1} characters")


def test_every_accepted_key_names_a_file_of_its_own(tmp_path):
    """Fuzz: generated keys; each one the rule accepts is stored under a name the file system takes, inside its
    folder (a name of one part, not `.` or `..`), with the encoding the IO manager uses."""
    rng = random.Random(3)
    safe, unsafe = "ab.:%-_ ~é€😀" + "z" * 10, "/\\\x00\x1b\r\n\t\u202e\u2028"
    accepted = 0
    for _ in range(2000):
        size = rng.choice((1, 5, 40, 99, 100, 101, 180))
        key = "".join(rng.choice(unsafe if rng.random() < 0.005 else safe) for _ in range(size))
        problem = partition_key_problem(key)
        stem = partition_file_stem(key)
        assert stem == encoded_key(key)
        if problem is not None:
            continue
        accepted += 1
        assert len(key) <= MAX_KEY_CHARS and len(stem.encode()) <= MAX_ENCODED_KEY
        assert "/" not in stem and "\\" not in stem and stem not in (".", "..")
        temp = tmp_path / f".{stem}.parquet.{4194304}-{uuid.uuid4().hex}.tmp"  # the longest name a write uses
        fd = os.open(temp, os.O_CREAT | os.O_WRONLY)
        os.close(fd)
        assert temp.parent == tmp_path
        temp.unlink()
    assert accepted > 500


@pytest.mark.parametrize("key", ["", "   ", "a...b", "a\nb"])
def test_dagster_rules_still_hold(key):
    assert partition_key_problem(key) is not None
