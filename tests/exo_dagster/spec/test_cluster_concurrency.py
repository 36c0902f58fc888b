"""A cluster's `concurrency:` is a whole number of runs, 1 or more; anything else is a located error
reported with the file's other errors."""

from __future__ import annotations

import pytest

from exo_dagster import load_cluster_file
from exo_dagster.compile.compiler import run_tags
from tests.exo_dagster.spec.test_parser_errors import FILES, HEAD, assert_error, errors_of


@pytest.mark.parametrize("value", ["0", "-2", "1.5", '"0"', "many", "[2]"])
def test_a_bad_concurrency_is_a_located_error_next_to_the_others(write_cluster, value):
    file, err = errors_of(write_cluster, HEAD + f"  concurrency: {value}\n  retries: lots\n" + FILES)
    assert_error(err, file, 4, 16, "`concurrency`", "how many runs of this cluster may run at once")
    assert_error(err, file, 5, 12, "`retries`", "whole number")  # the file's other mistakes are reported too


def test_a_step_concurrency_keeps_its_own_meaning(write_cluster):
    file, err = errors_of(write_cluster, HEAD + FILES + "      concurrency: 0\n")
    assert_error(err, file, 9, 20, "`concurrency`")
    assert not any("runs of this cluster" in d.hint for d in err.errors)


def test_concurrency_becomes_the_run_tag_the_queue_and_the_guard_read(write_cluster):
    cluster = load_cluster_file(write_cluster(HEAD + "  concurrency: 3\n" + FILES))
    assert cluster.spec.concurrency == 3
    assert run_tags(cluster)["exo/concurrency"] == "3:acme/errors"
    plain = load_cluster_file(write_cluster(HEAD + FILES, "plain.yaml"))
    assert plain.spec.concurrency is None and "exo/concurrency" not in run_tags(plain)
