"""The seed format (`version: 0.0.1b`) loads exactly as DESIGN.md writes it, every field included."""

from __future__ import annotations

from exo_dagster import load_cluster_file
from exo_dagster.spec.parser import SecretSource
from tests.exo_dagster.conftest import FIXTURES


def test_seed_spec_loads_every_field(seed_registry):
    cluster = load_cluster_file(FIXTURES / "seed.yaml", registry=seed_registry)
    spec = cluster.spec
    assert (spec.identifier, spec.project, spec.short_name) == ("acme/ticket-triage", "acme", "ticket-triage")
    assert cluster.job_name == "acme__ticket_triage"
    assert (spec.title, spec.sla, spec.retries) == ("Ticket triage", "6h", 3)
    assert spec.description.startswith("Classify new support tickets")
    assert spec.trigger.cron == "0 * * * *"
    assert cluster.secrets == {"OPENAI_API_KEY": SecretSource("env", "OPENAI_API_KEY")}
    tickets, labels = cluster.steps
    assert tickets.identifier == "tickets" and tickets.satellite.id == "satellite/exospherehost/get-files"
    assert tickets.config == {"provider": "local", "folder-path": "data/tickets", "allowed-extensions": ["jsonl"]}
    assert labels.spec.retries == 5
    assert labels.config["output-format"] == "json" and "secrets" not in labels.config
    # least privilege: the step is given API_KEY, read from the env var behind the cluster secret
    assert labels.secrets == {"API_KEY": SecretSource("env", "OPENAI_API_KEY")}
    assert labels.references == ("tickets",) and labels.per_row_source == "tickets"
    assert [s.identifier for s in cluster.logs_steps] == ["ship-logs"]
    assert spec.failure.from_ == "labels" and [s.identifier for s in cluster.failure_steps] == ["alert"]
    assert cluster.warnings == []


def test_identifier_defaults_to_name_slug(write_cluster):
    path = write_cluster("""\
version: 0.0.1b
cluster:
  identifier: a/b
  trigger: none
  satellites:
    - name: Find the Files!
      uses: satellite/exospherehost/get-files
      config: {folder-path: x}
""")
    cluster = load_cluster_file(path)
    assert cluster.steps[0].identifier == "find-the-files"
    assert cluster.steps[0].asset_name == "find_the_files"
    assert cluster.spec.trigger is None


def test_sql_table_names_become_references(write_cluster):
    path = write_cluster("""\
version: 0.0.1b
cluster:
  identifier: a/b
  execution: dataflow
  satellites:
    - {name: A, uses: satellite/exospherehost/get-files, identifier: a, config: {folder-path: x}}
    - {name: B, uses: satellite/exospherehost/get-files, identifier: b, config: {folder-path: y}}
    - {name: C, uses: satellite/exospherehost/sql, identifier: c,
       config: {query: "select * from a join b on a.name = b.name"}}
    - {name: D, uses: satellite/exospherehost/sql, identifier: d,
       config: {query: "select * from ${{ satellites.a.output }}"}}
""")
    cluster = load_cluster_file(path)
    assert sorted(cluster.step("c").references) == ["a", "b"]
    assert cluster.step("d").references == ("a",)
