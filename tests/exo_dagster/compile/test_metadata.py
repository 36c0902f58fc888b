"""What the Dagster UI shows of a cluster: asset keys [project, cluster, identifier], owners and tags,
descriptions led by the step's name, and output metadata by Dagster's conventions (a column table,
the row count, the stored file's uri; write-table's is the table it wrote)."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from exo_dagster import SpecError, compile_cluster, parse_cluster

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/orders-report
  description: Totals per region.
  owners: [data@acme.com, "team:analytics"]
  tags: {{domain: sales, tier: 1}}
  satellites:
    - name: Read orders
      uses: satellite/exospherehost/read-table
      identifier: orders
      config: {{path: "{source}", format: csv}}
    - name: Revenue per region
      uses: satellite/exospherehost/sql
      identifier: revenue
      description: One row per region.
      owners: ["team:finance"]
      tags: {{tier: 2, pii: false}}
      config: {{query: "select region, sum(amount) as revenue from orders group by region order by region"}}
    - name: Write the report
      uses: satellite/exospherehost/write-table
      identifier: report
      config: {{path: {target}}}
"""


def _cluster(tmp_path, target="reports/by-region.parquet"):
    source = tmp_path / "orders.csv"
    source.write_text("region,amount\neu,1\neu,2\nus,5\n")
    return parse_cluster(CLUSTER.format(source=source, target=target), str(tmp_path / "c.yaml"))


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["acme", "orders_report", name])


def test_asset_keys_name_project_cluster_and_step_while_ops_groups_and_storage_keep_their_names(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    cluster = _cluster(tmp_path)
    defs = compile_cluster(cluster)
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == {_key("orders"), _key("revenue"), _key("report")}
    revenue = defs.resolve_assets_def(_key("revenue"))
    # Dagster requires op names unique across the location: the identifier leads, the job name follows
    assert revenue.node_def.name == "revenue__acme__orders_report"
    assert revenue.group_names_by_key[_key("revenue")] == "acme__orders_report" == cluster.job_name
    assert defs.resolve_job_def(cluster.job_name).execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    # outputs stay where they were stored when the key was [acme__orders_report, revenue]
    assert (tmp_path / "exo" / "outputs" / "acme__orders_report" / "revenue.parquet").is_file()


def test_owners_and_tags_of_cluster_and_step_reach_the_assets_and_job(tmp_path):
    cluster = _cluster(tmp_path)
    defs = compile_cluster(cluster)
    spec = lambda name: defs.resolve_assets_def(_key(name)).specs_by_key[_key(name)]  # noqa: E731
    orders, revenue = spec("orders"), spec("revenue")
    assert list(orders.owners) == ["data@acme.com", "team:analytics"]
    assert list(revenue.owners) == ["team:finance"]  # the step's owners replace the cluster's
    assert {k: v for k, v in orders.tags.items() if not k.startswith("dagster/kind/")} == {
        "domain": "sales",
        "tier": "1",
    }
    assert {k: v for k, v in revenue.tags.items() if not k.startswith("dagster/kind/")} == {
        "domain": "sales",
        "tier": "2",
        "pii": "false",
    }
    job = defs.resolve_job_def(cluster.job_name)
    assert job.tags["domain"] == "sales" and job.tags["tier"] == "1" and job.tags["exo/cluster"] == "acme/orders-report"


def test_descriptions_lead_with_the_step_name_in_plain_text(tmp_path):
    defs = compile_cluster(_cluster(tmp_path))
    revenue = defs.resolve_assets_def(_key("revenue")).specs_by_key[_key("revenue")]
    first, second, third = revenue.description.split("\n\n")
    assert (first, second) == ("Revenue per region", "One row per region.")
    assert third.startswith("satellite/exospherehost/sql: ") and "`" not in revenue.description
    # what the satellite does: its docs' first sentence, whole (not the docstring's first line, cut where it wrapped)
    assert third.endswith("read straight from Parquet (or from memory, where this process just wrote it).")
    assert "\n" not in third
    assert "dagster/code_references" in revenue.metadata  # the link to the step's line in the YAML stays


@pytest.mark.parametrize(
    "bad,message",
    [
        ("bob", "owner 'bob' is neither an email address nor `team:<name>`"),
        ("'team:'", "a team owner needs a name after `team:`"),
    ],
)
def test_a_bad_owner_is_a_located_error(tmp_path, bad, message):
    text = CLUSTER.format(source="x.csv", target="r.parquet").replace('owners: ["team:finance"]', f"owners: [{bad}]")
    with pytest.raises(SpecError) as caught:
        parse_cluster(text, "c.yaml")
    [diagnostic] = caught.value.diagnostics
    assert message in diagnostic.message and (diagnostic.location.line, diagnostic.location.column) == (16, 16)
    assert "team:data-eng" in diagnostic.hint


def test_the_spec_accepts_exactly_the_owners_and_tags_dagster_accepts():
    from dagster._core.definitions.utils import is_valid_owner
    from dagster._utils.tags import VALID_STRICT_TAG_VALUE_REGEX, VALID_TAG_KEY_REGEX

    from exo_dagster.spec import models

    for owner in ["a@b.com", "first.last+x@sub.example.org", "team:x", "team:", "bob", "a@b", "@b.com", "Team:x"]:
        assert (
            models.OWNER_EMAIL.fullmatch(owner) is not None or (owner.startswith("team:") and len(owner) > 5)
        ) == is_valid_owner(owner), owner
    for key in ["a", "ns/a", "a/b/c", "a b", "x" * 63, "x" * 64, "ns/" + "x" * 63, "", "a:b"]:
        assert bool(models.TAG_KEY.match(key)) == bool(VALID_TAG_KEY_REGEX.match(key)), key
    for value in ["", "v1.2", "a b", "x" * 63, "x" * 64, "a/b"]:
        assert bool(models.TAG_VALUE.match(value)) == bool(VALID_STRICT_TAG_VALUE_REGEX.match(value)), value


@pytest.mark.parametrize(
    "tags,message",
    [
        ("{'has space': x}", "tag key 'has space' must be"),
        ("{exo/satellite: x}", "reserved prefix"),
        ("{ok: 'a b'}", "tag value 'a b' must be"),
        ("{ok: " + "v" * 64 + "}", "at most 63"),
    ],
)
def test_a_bad_tag_is_a_located_error(tags, message):
    text = CLUSTER.format(source="x.csv", target="r.parquet").replace("tags: {domain: sales, tier: 1}", f"tags: {tags}")
    with pytest.raises(SpecError) as caught:
        parse_cluster(text, "c.yaml")
    [diagnostic] = caught.value.diagnostics
    assert message in diagnostic.message and diagnostic.location.line == 6


def _materializations(instance: dg.DagsterInstance) -> dict[str, dict]:
    out = {}
    for name in ("orders", "revenue", "report"):
        [record] = instance.fetch_materializations(_key(name), limit=1).records
        out[name] = record.asset_materialization.metadata
    return out


def _columns(value) -> list[tuple[str, str]]:
    assert isinstance(value, dg.TableSchemaMetadataValue)
    return [(c.name, c.type) for c in value.schema.columns]


def test_materializations_carry_dagsters_column_schema_row_count_and_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    cluster = _cluster(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    assert compile_cluster(cluster).resolve_job_def(cluster.job_name).execute_in_process(instance=instance).success
    meta = _materializations(instance)
    revenue = meta["revenue"]
    assert _columns(revenue["dagster/column_schema"]) == [("region", "String"), ("revenue", "Int64")]
    assert revenue["dagster/row_count"].value == 2
    assert revenue["dagster/uri"].value == str(tmp_path / "exo" / "outputs" / "acme__orders_report" / "revenue.parquet")
    assert not {"exo/columns", "exo/path"} & set(revenue)  # one key per fact
    assert meta["orders"]["dagster/row_count"].value == 3
    # write-table: the table it wrote, not its one-row status
    report = meta["report"]
    assert report["dagster/row_count"].value == 2
    assert _columns(report["dagster/column_schema"]) == [("region", "String"), ("revenue", "Int64")]
    assert report["dagster/uri"].value == str(tmp_path / "exo" / "reports" / "by-region.parquet")
    assert pl.read_parquet(tmp_path / "exo" / "reports" / "by-region.parquet").height == 2


def test_write_table_into_duckdb_reports_the_table_name_and_its_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    cluster = parse_cluster(
        CLUSTER.format(source=tmp_path / "orders.csv", target="w.duckdb").replace(
            "config: {path: w.duckdb}", "config: {path: w.duckdb, table: revenue, mode: append}"
        ),
        str(tmp_path / "c.yaml"),
    )
    (tmp_path / "orders.csv").write_text("region,amount\neu,1\neu,2\nus,5\n")
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        assert job.execute_in_process(instance=instance).success
    report = _materializations(instance)["report"]
    assert report["dagster/table_name"].value == "revenue" and report["dagster/row_count"].value == 4  # appended twice
    assert report["dagster/uri"].value == str(tmp_path / "exo" / "w.duckdb")
    assert [name for name, _ in _columns(report["dagster/column_schema"])] == ["region", "revenue"]
