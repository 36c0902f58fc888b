"""Golden tests of what the compiler emits: asset keys, deps, tags, kinds, job, schedule."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from exo_dagster import compile_cluster, load_cluster_file, parse_cluster
from tests.exo_dagster.conftest import FIXTURES


def _graph(defs: dg.Definitions, job_name: str) -> dict:
    graph = defs.resolve_asset_graph()
    return {
        "/".join(key.path): sorted("/".join(d.path) for d in graph.get(key).parent_keys)
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path)
    }


def test_seed_cluster_compiles_to_golden_graph(seed_registry):
    cluster = load_cluster_file(FIXTURES / "seed.yaml", registry=seed_registry)
    defs = compile_cluster(cluster)
    assert _graph(defs, cluster.job_name) == {
        "acme/ticket_triage/tickets": [],
        "acme/ticket_triage/labels": ["acme/ticket_triage/tickets"],
    }
    job = defs.resolve_job_def("acme__ticket_triage")
    assert job.tags == {"exo/cluster": "acme/ticket-triage", "dagster/max_runtime": "21600"}
    assert {n.name for n in job.nodes} == {"tickets__acme__ticket_triage", "labels__acme__ticket_triage"}
    [schedule] = defs.schedules
    assert (schedule.name, schedule.cron_schedule, schedule.job_name, schedule.execution_timezone) == (
        "acme__ticket_triage__cron",
        "0 * * * *",
        "acme__ticket_triage",
        "UTC",
    )
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    labels = defs.resolve_assets_def(dg.AssetKey(["acme", "ticket_triage", "labels"]))
    spec = labels.specs_by_key[dg.AssetKey(["acme", "ticket_triage", "labels"])]
    assert spec.group_name == "acme__ticket_triage"
    assert spec.kinds == {"polars"}
    assert spec.metadata["exo/satellite"] == "satellite/exospherehost/llm-complete@1.0.0"
    shown = spec.metadata["exo/config"].data
    assert shown["model"] == "gpt-4o-mini" and shown["secrets"] == {"API_KEY": "<secret from env OPENAI_API_KEY>"}
    [ref] = spec.metadata["dagster/code_references"].code_references
    assert ref.file_path.endswith("fixtures/seed.yaml") and ref.line_number == 17
    node = labels.node_def
    assert node.retry_policy.max_retries == 5 and node.retry_policy.backoff == dg.Backoff.EXPONENTIAL
    assert node.tags["exo/satellite"] == "llm-complete" and json.loads(node.tags["exo/resources"]) == {
        "gpu": 0,
        "cpu": 1.0,
    }
    tickets = defs.resolve_assets_def(dg.AssetKey(["acme", "ticket_triage", "tickets"]))
    assert tickets.node_def.retry_policy.max_retries == 3  # the cluster default


def test_demo_cluster_graph_is_a_chain_in_list_order():
    cluster = load_cluster_file("definitions/demo.yaml")
    defs = compile_cluster(cluster)
    assert _graph(defs, cluster.job_name) == {
        "exospherehost/orders_report/files": [],
        "exospherehost/orders_report/orders": ["exospherehost/orders_report/files"],
        "exospherehost/orders_report/report": ["exospherehost/orders_report/revenue"],
        "exospherehost/orders_report/revenue": ["exospherehost/orders_report/orders"],
    }
    revenue = defs.resolve_assets_def(dg.AssetKey(["exospherehost", "orders_report", "revenue"]))
    assert revenue.specs_by_key[revenue.key].kinds == {"duckdb", "sql"}


DATAFLOW = """\
version: 0.0.1b
cluster:
  identifier: a/flow
  execution: {mode}
  sla: 24h
  satellites:
    - {{name: A, uses: satellite/exospherehost/get-files, identifier: a, config: {{folder-path: x}}}}
    - {{name: B, uses: satellite/exospherehost/get-files, identifier: b, config: {{folder-path: y}}}}
    - {{name: C, uses: satellite/exospherehost/sql, identifier: c, config: {{query: "select * from a"}}}}
    - {{name: D, uses: satellite/exospherehost/get-files, identifier: d, after: [b], config: {{folder-path: z}},
       resources: {{gpu: 1, gpu-type: a100}}}}
"""


def test_dataflow_waits_only_for_references_and_after():
    defs = compile_cluster(parse_cluster(DATAFLOW.format(mode="dataflow"), "flow.yaml"))
    assert _graph(defs, "a__flow") == {
        "a/flow/a": [],
        "a/flow/b": [],
        "a/flow/c": ["a/flow/a"],
        "a/flow/d": ["a/flow/b"],
    }
    job = defs.resolve_job_def("a__flow")
    assert job.tags["exo/compute"] == "gpu" and job.tags["dagster/max_runtime"] == str(24 * 3600)
    d = defs.resolve_assets_def(dg.AssetKey(["a", "flow", "d"]))
    assert d.specs_by_key[d.key].kinds == {"gpu", "polars", "file"}
    assert d.node_def.tags["exo/gpu"] == "1"


def test_sequential_is_the_default_order():
    defs = compile_cluster(parse_cluster(DATAFLOW.format(mode="sequential"), "flow.yaml"))
    assert _graph(defs, "a__flow") == {
        "a/flow/a": [],
        "a/flow/b": ["a/flow/a"],
        "a/flow/c": ["a/flow/a", "a/flow/b"],
        "a/flow/d": ["a/flow/b", "a/flow/c"],
    }


@pytest.mark.slow
def test_a_long_sequential_cluster_resolves_its_job():
    """A 2,500-step chain (fails without exo raising the limit): Dagster walks the graph recursively."""
    steps = ["    - {name: S0, uses: satellite/exospherehost/sql, identifier: s0, config: {query: select 1 as x}}"]
    steps += [
        f"    - {{name: S{i}, uses: satellite/exospherehost/sql, identifier: s{i}, config: {{query: select x from "
        f"s{i - 1}}}}}"
        for i in range(1, 2500)
    ]
    text = "version: 0.0.1b\ncluster:\n  identifier: a/long\n  satellites:\n" + "\n".join(steps) + "\n"
    defs = compile_cluster(parse_cluster(text, "long.yaml"))
    job = defs.resolve_job_def("a__long")
    assert len(job.nodes) == 2500
