"""A partition key a run brings (its `dagster/partition` tag) meets the rule static keys meet at validate time:
one that could not name its file fails the step before anything is computed or stored, with a plain message."""

from __future__ import annotations

import dagster as dg
import pytest

from exo_dagster import load_cluster_file
from exo_dagster.spec_dagster.partitions import template_roots

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/run-keys
  partitions:
    static: [eu, us]
  satellites:
    - {name: Q, uses: satellite/exospherehost/sql, identifier: q, config: {query: "select ${{ partition.key }} as k"}}
"""


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    path = tmp_path_factory.mktemp("run_keys") / "cluster.yaml"
    path.write_text(CLUSTER)
    return template_roots(load_cluster_file(path))


def test_a_stored_key_gives_the_partition_fields(roots):
    with dg.build_op_context(partition_key="eu") as context:
        assert roots(context) == {"partition": {"key": "eu"}}


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("k" * 250, "has 250 characters; the most is 100"),
        ("../../storage", "holds '/', a path separator"),
        ("a\x1b[2Jb", "holds '\\x1b', a control character"),
    ],
)
def test_a_key_that_cannot_name_a_file_fails_the_step_plainly(roots, key, why):
    with dg.build_op_context(partition_key=key) as context, pytest.raises(dg.Failure) as info:
        roots(context)
    text = info.value.description
    assert text.startswith("cluster/acme/run-keys: this run's partition key cannot be stored: ") and why in text
    assert "\x1b" not in text and info.value.allow_retries is False
